package wire

import "encoding/binary"

// CP is a view of a Configuration payload (RFC 7296 §3.15).
type CP struct {
	Type       CFGType
	Attributes []CPAttribute
}

// CPAttribute is one configuration attribute (RFC 7296 §3.15.1). An empty
// Value asks for an attribute in a CFG_REQUEST. Value aliases the parsed
// buffer.
type CPAttribute struct {
	Type  uint16 // 15 bits; the top bit is reserved
	Value []byte
}

const (
	cpHeaderLen     = 4
	cpAttrHeaderLen = 4
	cpAttrTypeMask  = 0x7fff
)

// ParseCP decodes a CP payload body, appending its attributes to dst. The
// reserved top bit of each attribute type is ignored, as §3.15.1 asks.
// Attribute values are not interpreted here: their meaning, and whether an
// unknown one matters, depends on CFG Type and policy.
func ParseCP(dst []CPAttribute, body []byte) (CP, error) {
	if len(body) < cpHeaderLen {
		return CP{Attributes: dst}, errSyntax(PayloadCP, "truncated configuration")
	}
	c := CP{Type: CFGType(body[0])}
	for b := body[cpHeaderLen:]; len(b) > 0; {
		if len(b) < cpAttrHeaderLen {
			return CP{Attributes: dst}, errSyntax(PayloadCP, "truncated attribute")
		}
		n := cpAttrHeaderLen + int(binary.BigEndian.Uint16(b[2:4]))
		if n > len(b) {
			return CP{Attributes: dst}, errSyntax(PayloadCP, "attribute length out of bounds")
		}
		dst = append(dst, CPAttribute{
			Type:  binary.BigEndian.Uint16(b[0:2]) & cpAttrTypeMask,
			Value: b[cpAttrHeaderLen:n:n],
		})
		b = b[n:]
	}
	c.Attributes = dst
	return c, nil
}

// Append appends the CP payload body to b.
func (c *CP) Append(b []byte) []byte {
	b = append(b, byte(c.Type), 0, 0, 0)
	for _, a := range c.Attributes {
		t := a.Type & cpAttrTypeMask
		b = append(b, byte(t>>8), byte(t), byte(len(a.Value)>>8), byte(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

// AddCP appends a CP payload.
func (w *Builder) AddCP(c CP) {
	w.End(c.Append(w.Start(PayloadCP, false)))
}
