package transport

// Kind is what a datagram received on an IKE or NAT-T port turned out to be.
type Kind uint8

const (
	// KindInvalid is a datagram too short to be what its first octets claim;
	// it is dropped and counted.
	KindInvalid Kind = iota
	// KindIKE is an IKE message, without the non-ESP marker.
	KindIKE
	// KindESP is a UDP-encapsulated ESP packet, starting at the SPI.
	KindESP
	// KindKeepalive is a NAT keepalive; it is dropped and counted.
	KindKeepalive
)

func (k Kind) String() string {
	switch k {
	case KindIKE:
		return "ike"
	case KindESP:
		return "esp"
	case KindKeepalive:
		return "keepalive"
	default:
		return "invalid"
	}
}

const (
	// NonESPMarkerLen is the length of the zero marker that precedes an IKE
	// message on the NAT-T port (RFC 3948 §2.2).
	NonESPMarkerLen = 4
	// IKEHeaderLen is the fixed IKE header (RFC 7296 §3.1); a shorter IKE
	// message cannot be parsed.
	IKEHeaderLen = 28
	// MinESPLen is the SPI and sequence number (RFC 4303 §2); a shorter
	// packet cannot be looked up.
	MinESPLen = 8
	// keepaliveOctet is the whole payload of a NAT keepalive (RFC 3948 §2.3).
	keepaliveOctet = 0xFF
)

// Classify decides what a UDP payload b is. encap says that b arrived on a
// NAT-T socket (port 4500), where the first four octets distinguish IKE
// (zero, the non-ESP marker) from ESP (a non-zero SPI) and a single 0xFF
// octet is a keepalive. On the IKE port everything is IKE.
//
// For KindIKE the returned slice is the IKE message with the marker removed;
// for KindESP it is the ESP packet starting at the SPI; otherwise it is nil.
// Classify checks only lengths: the IKE header and the SPI are the business
// of the layers above.
func Classify(b []byte, encap bool) (Kind, []byte) {
	if !encap {
		if len(b) < IKEHeaderLen {
			return KindInvalid, nil
		}
		return KindIKE, b
	}
	if len(b) == 1 && b[0] == keepaliveOctet {
		return KindKeepalive, nil
	}
	if len(b) < NonESPMarkerLen {
		return KindInvalid, nil
	}
	if b[0]|b[1]|b[2]|b[3] == 0 {
		m := b[NonESPMarkerLen:]
		if len(m) < IKEHeaderLen {
			return KindInvalid, nil
		}
		return KindIKE, m
	}
	if len(b) < MinESPLen {
		return KindInvalid, nil
	}
	return KindESP, b
}
