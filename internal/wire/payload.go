package wire

import "encoding/binary"

// GenericHeaderLen is the size of the generic payload header (RFC 7296 §3.2).
const GenericHeaderLen = 4

const flagCritical = 0x80

// Payload is a view of one payload of a chain. Body excludes the generic
// header and aliases the parsed buffer.
type Payload struct {
	Type     PayloadType
	Next     PayloadType // for SK and SKF: the type of the first inner payload
	Critical bool
	Body     []byte
}

// maxInline is how many payloads a Message holds without allocating. An
// IKE_AUTH request of a remote-access client carries about a dozen; longer
// chains still parse, spilling to the heap.
const maxInline = 24

// Message is a parsed IKE message: the header and the payload chain that
// stands outside any SK payload. Reuse a Message across datagrams to parse
// without allocating.
type Message struct {
	Header   Header
	Payloads []Payload
	// Raw is the message as received, up to Header.Length. Retransmit
	// detection and AUTH computation need the exact octets.
	Raw    []byte
	inline [maxInline]Payload
}

// Parse decodes b into m. Payload bodies alias b.
func (m *Message) Parse(b []byte) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	m.Header = h
	m.Raw = b[:h.Length]
	m.Payloads, err = ParseChain(m.inline[:0], h.NextPayload, m.Raw[HeaderLen:])
	return err
}

// Find returns the first payload of type t.
func (m *Message) Find(t PayloadType) (Payload, bool) {
	return Find(m.Payloads, t)
}

// Find returns the first payload of type t in ps.
func Find(ps []Payload, t PayloadType) (Payload, bool) {
	for _, p := range ps {
		if p.Type == t {
			return p, true
		}
	}
	return Payload{}, false
}

// ParseChain walks a payload chain that starts with type first and appends
// one view per payload to dst. Unknown payloads without the critical bit are
// skipped (RFC 7296 §2.5). SK and SKF must be the last payload of a chain
// (RFC 7296 §3.14, RFC 7383 §2.5): their Next Payload names the first inner
// payload, not a following outer one.
func ParseChain(dst []Payload, first PayloadType, b []byte) ([]Payload, error) {
	next := first
	for next != PayloadNone {
		if len(b) < GenericHeaderLen {
			return dst, errSyntax(next, "truncated payload header")
		}
		typ := next
		next = PayloadType(b[0])
		critical := b[1]&flagCritical != 0
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < GenericHeaderLen || n > len(b) {
			return dst, errSyntax(typ, "payload length out of bounds")
		}
		body := b[GenericHeaderLen:n:n]
		b = b[n:]
		if !typ.known() {
			if critical {
				return dst, &Error{Notify: UNSUPPORTED_CRITICAL_PAYLOAD, Payload: typ}
			}
			continue
		}
		p := Payload{Type: typ, Critical: critical, Body: body}
		if typ == PayloadSK || typ == PayloadSKF {
			p.Next = next
			next = PayloadNone
			if len(b) != 0 {
				return dst, errSyntax(typ, "payloads after encrypted payload")
			}
		}
		dst = append(dst, p)
	}
	if len(b) != 0 {
		return dst, errSyntax(PayloadNone, "octets after last payload")
	}
	return dst, nil
}

// AppendPayloadHeader appends a generic payload header. hike sets the
// critical bit only where RFC 7296 asks for it, which is nowhere among the
// payloads it defines, so the bit is left to the caller.
func AppendPayloadHeader(b []byte, next PayloadType, critical bool, length int) []byte {
	var f byte
	if critical {
		f = flagCritical
	}
	return append(b, byte(next), f, byte(length>>8), byte(length))
}
