package wire

// ID is a view of an Identification payload, IDi or IDr (RFC 7296 §3.5).
//
// Raw is the whole payload body (ID Type, the three reserved octets and the
// data), which the AUTH computation signs as RestOfInitIDPayload /
// RestOfRespIDPayload (RFC 7296 §2.15); it aliases the parsed buffer. To
// get the same octets for an ID about to be sent, use Append.
type ID struct {
	Type IDType
	Data []byte
	Raw  []byte
}

const idHeaderLen = 4

// ParseID decodes an IDi or IDr payload body; p names which, for errors.
// Address IDs must hold exactly one address; the contents of the others are
// the policy layer's business.
func ParseID(p PayloadType, body []byte) (ID, error) {
	if len(body) < idHeaderLen {
		return ID{}, errSyntax(p, "truncated identification")
	}
	id := ID{Type: IDType(body[0]), Data: body[idHeaderLen:], Raw: body}
	switch {
	case id.Type == ID_IPV4_ADDR && len(id.Data) != 4,
		id.Type == ID_IPV6_ADDR && len(id.Data) != 16:
		return ID{}, errSyntax(p, "address identity of wrong length")
	}
	return id, nil
}

// Append appends the ID payload body to b. The reserved octets are zero, as
// RFC 7296 §3.5 requires, so the result is what AUTH must cover.
func (id *ID) Append(b []byte) []byte {
	b = append(b, byte(id.Type), 0, 0, 0)
	return append(b, id.Data...)
}

// AddID appends an IDi or IDr payload (t names which).
func (w *Builder) AddID(t PayloadType, id ID) {
	w.End(id.Append(w.Start(t, false)))
}
