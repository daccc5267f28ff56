package wire

import "encoding/binary"

// HeaderLen is the size of the IKE header (RFC 7296 §3.1).
const HeaderLen = 28

// Version is the only IKE version hike speaks: major 2, minor 0.
const Version = 0x20

// Header is the fixed IKE header. SPIs are held as integers in network byte
// order because the SA table keys on them.
type Header struct {
	SPIi, SPIr  uint64
	NextPayload PayloadType
	Version     uint8 // major in the high nibble, minor in the low one
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the I flag is set: the sender is the original
// initiator (or rekey initiator) of the IKE SA.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// ParseHeader decodes the header at the start of b and checks that b holds
// the whole message it announces. Octets after Length are not part of the
// message; callers that received a datagram pass it whole.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, errSyntax(PayloadNone, "message shorter than IKE header")
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:8])
	h.SPIr = binary.BigEndian.Uint64(b[8:16])
	h.NextPayload = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.Version>>4 != Version>>4 {
		// RFC 7296 §2.5: a higher major version is answered (at most) with
		// INVALID_MAJOR_VERSION; a lower one is not IKEv2 at all.
		return h, &Error{Notify: INVALID_MAJOR_VERSION, Reason: "unsupported major version"}
	}
	if h.Length < HeaderLen || uint64(h.Length) > uint64(len(b)) {
		return h, errSyntax(PayloadNone, "header length disagrees with datagram")
	}
	return h, nil
}

// Append appends the encoded header to b.
func (h *Header) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(h.NextPayload), v, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}
