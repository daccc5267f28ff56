package wire

import "encoding/binary"

// Typed notification data. Each notify type hike interprets has a fixed data
// layout; check enforces it at parse time and the accessors below decode it.
// The accessors re-check lengths so that they are safe on a Notify that was
// built by hand rather than parsed.

// NATDetectionLen is the size of NAT_DETECTION_*_IP data: a SHA-1 digest
// (RFC 7296 §2.23).
const NATDetectionLen = 20

// Cookie lengths allowed by RFC 7296 §2.6.
const (
	MinCookieLen = 1
	MaxCookieLen = 64
)

// check validates the data length (and, where the RFC fixes it, the SPI) of
// the notify types hike interprets. Other types pass unchecked: unknown status
// notifies must be ignored (RFC 7296 §3.10.1), not rejected.
func (n *Notify) check() error {
	d := len(n.Data)
	ok := true
	switch n.Type {
	case IKEV2_MESSAGE_ID_SYNC_SUPPORTED, IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED:
		// RFC 6311 §6.1, §6.2: no SPI, no data.
		ok = len(n.SPI) == 0 && d == 0
	case IKEV2_MESSAGE_ID_SYNC:
		ok = len(n.SPI) == 0 && d == messageIDSyncLen // RFC 6311 §6.3
	case IPSEC_REPLAY_COUNTER_SYNC:
		ok = len(n.SPI) == 0 && (d == 4 || d == 8) // RFC 6311 §6.4
	case COOKIE:
		ok = d >= MinCookieLen && d <= MaxCookieLen
	case NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP:
		ok = d == NATDetectionLen
	case SIGNATURE_HASH_ALGORITHMS:
		ok = d%2 == 0 // RFC 7427 §4: a list of 16-bit identifiers
	case SET_WINDOW_SIZE, INVALID_MESSAGE_ID:
		ok = d == 4 // RFC 7296 §3.10.1
	case INVALID_KE_PAYLOAD:
		ok = d == 2
	case UNSUPPORTED_CRITICAL_PAYLOAD:
		ok = d == 1
	case REKEY_SA:
		// RFC 7296 §1.3.3: names the Child SA being rekeyed by its SPI.
		ok = len(n.SPI) == 4 && d == 0
	case INITIAL_CONTACT, IKEV2_FRAGMENTATION_SUPPORTED:
		ok = d == 0
	}
	if !ok {
		return errSyntax(PayloadNotify, "bad data length for notify type")
	}
	return nil
}

func (n *Notify) dataLen(t NotifyType, l int) error {
	if n.Type != t || len(n.Data) != l {
		return errSyntax(PayloadNotify, "notify type or data length mismatch")
	}
	return nil
}

// MessageIDSync is the data of IKEV2_MESSAGE_ID_SYNC (RFC 6311 §6.3). Both
// counters are from the sender's point of view, so a response swaps them
// relative to the request it answers.
type MessageIDSync struct {
	Nonce   uint32 // echoed unchanged in the response
	SendReq uint32 // EXPECTED_SEND_REQ_MESSAGE_ID: the sender's next request MID
	RecvReq uint32 // EXPECTED_RECV_REQ_MESSAGE_ID: the next request MID the sender accepts
}

const messageIDSyncLen = 12

// MessageIDSync decodes n's data as IKEV2_MESSAGE_ID_SYNC.
func (n *Notify) MessageIDSync() (MessageIDSync, error) {
	if err := n.dataLen(IKEV2_MESSAGE_ID_SYNC, messageIDSyncLen); err != nil {
		return MessageIDSync{}, err
	}
	return MessageIDSync{
		Nonce:   binary.BigEndian.Uint32(n.Data[0:4]),
		SendReq: binary.BigEndian.Uint32(n.Data[4:8]),
		RecvReq: binary.BigEndian.Uint32(n.Data[8:12]),
	}, nil
}

// Append appends the 12 data octets to b.
func (s MessageIDSync) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, s.Nonce)
	b = binary.BigEndian.AppendUint32(b, s.SendReq)
	return binary.BigEndian.AppendUint32(b, s.RecvReq)
}

// AddMessageIDSync appends N(IKEV2_MESSAGE_ID_SYNC) with Protocol ID and SPI
// size 0 (RFC 6311 §6.3).
func (w *Builder) AddMessageIDSync(s MessageIDSync) {
	w.End(s.Append(w.StartNotify(ProtoNone, nil, IKEV2_MESSAGE_ID_SYNC)))
}

// ReplayCounterSync is the data of IPSEC_REPLAY_COUNTER_SYNC (RFC 6311
// §6.4): the delta to add to the receiver's outbound replay counters of all
// Child SAs of the IKE SA. It is four octets wide, or eight when the Child
// SAs use extended sequence numbers.
type ReplayCounterSync struct {
	Delta uint64
	ESN   bool
}

// ReplayCounterSync decodes n's data as IPSEC_REPLAY_COUNTER_SYNC.
func (n *Notify) ReplayCounterSync() (ReplayCounterSync, error) {
	if n.Type != IPSEC_REPLAY_COUNTER_SYNC {
		return ReplayCounterSync{}, errSyntax(PayloadNotify, "notify type mismatch")
	}
	switch len(n.Data) {
	case 4:
		return ReplayCounterSync{Delta: uint64(binary.BigEndian.Uint32(n.Data))}, nil
	case 8:
		return ReplayCounterSync{Delta: binary.BigEndian.Uint64(n.Data), ESN: true}, nil
	}
	return ReplayCounterSync{}, errSyntax(PayloadNotify, "bad replay counter delta length")
}

// Append appends the 4 or 8 data octets to b. Without ESN the delta is
// truncated to 32 bits; callers cap it first.
func (r ReplayCounterSync) Append(b []byte) []byte {
	if r.ESN {
		return binary.BigEndian.AppendUint64(b, r.Delta)
	}
	return binary.BigEndian.AppendUint32(b, uint32(r.Delta))
}

// AddReplayCounterSync appends N(IPSEC_REPLAY_COUNTER_SYNC) with Protocol
// ID and SPI size 0 (RFC 6311 §6.4).
func (w *Builder) AddReplayCounterSync(r ReplayCounterSync) {
	w.End(r.Append(w.StartNotify(ProtoNone, nil, IPSEC_REPLAY_COUNTER_SYNC)))
}

// Cookie returns the data of a COOKIE notify (RFC 7296 §2.6). It aliases n.
func (n *Notify) Cookie() ([]byte, error) {
	if n.Type != COOKIE || len(n.Data) < MinCookieLen || len(n.Data) > MaxCookieLen {
		return nil, errSyntax(PayloadNotify, "bad cookie")
	}
	return n.Data, nil
}

// NATDetection returns the SHA-1 digest of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notify (RFC 7296 §2.23).
func (n *Notify) NATDetection() ([NATDetectionLen]byte, error) {
	var d [NATDetectionLen]byte
	if (n.Type != NAT_DETECTION_SOURCE_IP && n.Type != NAT_DETECTION_DESTINATION_IP) || len(n.Data) != NATDetectionLen {
		return d, errSyntax(PayloadNotify, "bad NAT detection data")
	}
	copy(d[:], n.Data)
	return d, nil
}

// SignatureHashAlgorithms decodes a SIGNATURE_HASH_ALGORITHMS notify (RFC
// 7427 §4) into dst and returns the grown slice. Pass a stack array's slice
// to avoid allocating; the list has a handful of entries.
func (n *Notify) SignatureHashAlgorithms(dst []uint16) ([]uint16, error) {
	if n.Type != SIGNATURE_HASH_ALGORITHMS || len(n.Data)%2 != 0 {
		return dst, errSyntax(PayloadNotify, "bad signature hash algorithm list")
	}
	for d := n.Data; len(d) >= 2; d = d[2:] {
		dst = append(dst, binary.BigEndian.Uint16(d))
	}
	return dst, nil
}

// AddSignatureHashAlgorithms appends N(SIGNATURE_HASH_ALGORITHMS) listing
// algs (RFC 7427 §4).
func (w *Builder) AddSignatureHashAlgorithms(algs ...uint16) {
	b := w.StartNotify(ProtoNone, nil, SIGNATURE_HASH_ALGORITHMS)
	for _, a := range algs {
		b = binary.BigEndian.AppendUint16(b, a)
	}
	w.End(b)
}

// WindowSize returns the data of a SET_WINDOW_SIZE notify (RFC 7296 §2.3).
func (n *Notify) WindowSize() (uint32, error) {
	if err := n.dataLen(SET_WINDOW_SIZE, 4); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(n.Data), nil
}

// InvalidMessageID returns the message ID carried by INVALID_MESSAGE_ID
// (RFC 7296 §3.10.1).
func (n *Notify) InvalidMessageID() (uint32, error) {
	if err := n.dataLen(INVALID_MESSAGE_ID, 4); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(n.Data), nil
}

// InvalidKEGroup returns the DH group the responder asks for in
// INVALID_KE_PAYLOAD (RFC 7296 §1.3, §3.10.1).
func (n *Notify) InvalidKEGroup() (uint16, error) {
	if err := n.dataLen(INVALID_KE_PAYLOAD, 2); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(n.Data), nil
}

// UnsupportedCriticalPayload returns the payload type named by
// UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 §2.5).
func (n *Notify) UnsupportedCriticalPayload() (PayloadType, error) {
	if err := n.dataLen(UNSUPPORTED_CRITICAL_PAYLOAD, 1); err != nil {
		return 0, err
	}
	return PayloadType(n.Data[0]), nil
}

// RekeySA returns the protocol and SPI of the Child SA a REKEY_SA notify
// names (RFC 7296 §1.3.3). The SPI is read as a big-endian integer, the form
// the SA tables key on.
func (n *Notify) RekeySA() (ProtocolID, uint32, error) {
	if n.Type != REKEY_SA || len(n.SPI) != 4 || len(n.Data) != 0 {
		return 0, 0, errSyntax(PayloadNotify, "bad REKEY_SA")
	}
	return n.Protocol, binary.BigEndian.Uint32(n.SPI), nil
}

// AddNotifyUint appends a notify whose data is a big-endian integer of
// width octets (1, 2, 4 or 8): SET_WINDOW_SIZE (4), INVALID_MESSAGE_ID (4),
// INVALID_KE_PAYLOAD (2), UNSUPPORTED_CRITICAL_PAYLOAD (1).
func (w *Builder) AddNotifyUint(t NotifyType, width int, v uint64) {
	b := w.StartNotify(ProtoNone, nil, t)
	switch width {
	case 1:
		b = append(b, byte(v))
	case 2:
		b = binary.BigEndian.AppendUint16(b, uint16(v))
	case 4:
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	default:
		b = binary.BigEndian.AppendUint64(b, v)
	}
	w.End(b)
}

// AddRekeySA appends N(REKEY_SA) naming the Child SA with the given
// protocol and SPI (RFC 7296 §1.3.3).
func (w *Builder) AddRekeySA(p ProtocolID, spi uint32) {
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], spi)
	w.End(w.StartNotify(p, s[:], REKEY_SA))
}
