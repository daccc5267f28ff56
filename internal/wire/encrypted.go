package wire

import "encoding/binary"

// Encrypted is a view of an Encrypted (SK, RFC 7296 §3.14) or Encrypted
// Fragment (SKF, RFC 7383 §2.5) payload. The package does not know the
// negotiated transforms, so Data (IV | ciphertext | padding | pad length |
// ICV) stays opaque; the crypto layer splits it.
//
// Because SK and SKF are always the last payload of a message, Data ends
// where the message ends. An AEAD's associated data is everything before
// Data (RFC 5282 §5.1, RFC 7383 §2.5), which AAD returns; a separate ICV
// covers the message up to the ICV itself (RFC 7296 §3.14).
type Encrypted struct {
	Type PayloadType // PayloadSK or PayloadSKF
	// Next is the type of the first inner payload. In SKF fragments other
	// than the first it is 0 (RFC 7383 §2.5).
	Next PayloadType
	// Number and Total are the SKF Fragment Number and Total Fragments; 0
	// for SK.
	Number, Total uint16
	Data          []byte
}

const skfHeaderLen = 4

// ParseEncrypted decodes the body of an SK or SKF payload p, as returned by
// ParseChain.
func ParseEncrypted(p Payload) (Encrypted, error) {
	e := Encrypted{Type: p.Type, Next: p.Next, Data: p.Body}
	switch p.Type {
	case PayloadSK:
		return e, nil
	case PayloadSKF:
		if len(p.Body) < skfHeaderLen {
			return Encrypted{}, errSyntax(PayloadSKF, "truncated fragment header")
		}
		e.Number = binary.BigEndian.Uint16(p.Body[0:2])
		e.Total = binary.BigEndian.Uint16(p.Body[2:4])
		// RFC 7383 §2.5: both start at 1 and the number never exceeds the
		// total.
		if e.Number == 0 || e.Total == 0 || e.Number > e.Total {
			return Encrypted{}, errSyntax(PayloadSKF, "bad fragment number or total")
		}
		e.Data = p.Body[skfHeaderLen:]
		return e, nil
	}
	return Encrypted{}, errSyntax(p.Type, "not an encrypted payload")
}

// Encrypted returns the view of m's SK or SKF payload, which ParseChain has
// already placed last; ok is false if m has neither.
func (m *Message) Encrypted() (e Encrypted, ok bool, err error) {
	if len(m.Payloads) == 0 {
		return e, false, nil
	}
	p := m.Payloads[len(m.Payloads)-1]
	if p.Type != PayloadSK && p.Type != PayloadSKF {
		return e, false, nil
	}
	e, err = ParseEncrypted(p)
	return e, err == nil, err
}

// AAD returns the octets of raw (the whole message, as in Message.Raw)
// that precede e.Data: the IKE header, any unencrypted payloads and the
// SK/SKF payload header. e must be a view into raw.
func (e *Encrypted) AAD(raw []byte) []byte {
	return raw[:len(raw)-len(e.Data)]
}

// StartSK opens the Encrypted payload, which must be the last of the
// message: its Next Payload field names inner, the first payload of the
// encrypted chain. Append IV | ciphertext | ICV (or space for them) to the
// returned buffer and close it with End; Finish then fixes the lengths that
// the integrity check covers.
func (w *Builder) StartSK(inner PayloadType) []byte {
	b := w.Start(PayloadSK, false)
	b[w.cur] = byte(inner)
	w.next = -1 // nothing may follow
	return b
}

// StartSKF opens an Encrypted Fragment payload (RFC 7383 §2.5). inner is
// the first inner payload type for fragment 1 and must be PayloadNone for
// the others.
func (w *Builder) StartSKF(inner PayloadType, number, total uint16) []byte {
	b := w.Start(PayloadSKF, false)
	b[w.cur] = byte(inner)
	w.next = -1
	b = binary.BigEndian.AppendUint16(b, number)
	return binary.BigEndian.AppendUint16(b, total)
}
