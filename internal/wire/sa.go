package wire

import "encoding/binary"

// Transform is one transform substructure of a proposal (RFC 7296 §3.3.2).
// KeyLen is the Key Length attribute in bits (§3.3.5), 0 when absent.
//
// Unsupported reports that the transform carried an attribute hike does not
// understand (or a Key Length of zero). Such a transform is still syntax, so
// it parses, but RFC 7296 §3.3.6 has the responder reject the proposal that
// holds it; selection code must skip it. Append does not encode the unknown
// attributes back.
type Transform struct {
	Type        TransformType
	ID          uint16
	KeyLen      uint16
	Unsupported bool
}

// Proposal is one proposal substructure of an SA payload (RFC 7296 §3.3.1).
// SPI aliases the parsed buffer: empty in IKE_SA_INIT, 8 octets for an IKE
// SA rekey, 4 octets for ESP and AH.
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// Substructure lengths and "last substructure" markers (RFC 7296 §3.3.1,
// §3.3.2). The markers are 0 for the last substructure and 2 (proposal) or
// 3 (transform) otherwise, a leftover of IKEv1 payload types.
const (
	proposalHeaderLen  = 8
	transformHeaderLen = 8
	moreProposals      = 2
	moreTransforms     = 3
	attrFormatTV       = 0x8000
)

// ParseSA decodes an SA payload body and appends its proposals to dst.
//
// Proposal SPIs alias body. The transforms of all proposals share a single
// backing array allocated here (each proposal's slice is capped, so appending
// to one cannot overwrite the next); pass a dst with spare capacity to avoid
// a second allocation for the proposals.
//
// Proposal numbers must start at a non-zero value and rise by one. RFC 7296
// §3.3.1 asks the initiator to start at 1 but lets a responder echo the
// number it accepted, so the first number alone is not a syntax error.
// Unknown protocol IDs and transform types are kept: §3.3.6 rejects such a
// proposal during selection, not the whole message.
func ParseSA(dst []Proposal, body []byte) ([]Proposal, error) {
	if len(body) == 0 {
		return dst, errSyntax(PayloadSA, "no proposals")
	}
	// No transform is shorter than its 8-octet header, which bounds the
	// count and lets one allocation hold them all.
	ts := make([]Transform, 0, len(body)/transformHeaderLen)
	var prev uint8
	for first := true; ; first = false {
		if len(body) < proposalHeaderLen {
			return dst, errSyntax(PayloadSA, "truncated proposal")
		}
		last := body[0]
		n := int(binary.BigEndian.Uint16(body[2:4]))
		num, proto, spiSize, nt := body[4], ProtocolID(body[5]), int(body[6]), int(body[7])
		if n < proposalHeaderLen+spiSize || n > len(body) {
			return dst, errSyntax(PayloadSA, "proposal length out of bounds")
		}
		switch {
		case last != 0 && last != moreProposals:
			return dst, errSyntax(PayloadSA, "bad last-proposal marker")
		case (last == 0) != (n == len(body)):
			return dst, errSyntax(PayloadSA, "last-proposal marker disagrees with length")
		case num == 0 || (!first && num != prev+1):
			return dst, errSyntax(PayloadSA, "proposal numbers not consecutive")
		case !spiSizeValid(proto, spiSize):
			return dst, errSyntax(PayloadSA, "bad SPI size for protocol")
		case nt == 0:
			return dst, errSyntax(PayloadSA, "proposal without transforms")
		}
		prev = num
		p := Proposal{Num: num, Protocol: proto, SPI: body[proposalHeaderLen : proposalHeaderLen+spiSize : proposalHeaderLen+spiSize]}
		start := len(ts)
		var err error
		if ts, err = parseTransforms(ts, nt, body[proposalHeaderLen+spiSize:n]); err != nil {
			return dst, err
		}
		p.Transforms = ts[start:len(ts):len(ts)]
		dst = append(dst, p)
		body = body[n:]
		if last == 0 {
			return dst, nil
		}
	}
}

// spiSizeValid checks the SPI size against RFC 7296 §3.3.1: none or eight
// octets for IKE (eight when rekeying), four for AH and ESP.
func spiSizeValid(p ProtocolID, size int) bool {
	switch p {
	case ProtoIKE:
		return size == 0 || size == 8
	case ProtoAH, ProtoESP:
		return size == 4
	}
	return true
}

// parseTransforms decodes exactly count transforms that must fill b.
func parseTransforms(ts []Transform, count int, b []byte) ([]Transform, error) {
	for i := 0; i < count; i++ {
		if len(b) < transformHeaderLen {
			return ts, errSyntax(PayloadSA, "truncated transform")
		}
		last := b[0]
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < transformHeaderLen || n > len(b) {
			return ts, errSyntax(PayloadSA, "transform length out of bounds")
		}
		if last != 0 && last != moreTransforms {
			return ts, errSyntax(PayloadSA, "bad last-transform marker")
		}
		if (last == 0) != (i == count-1) {
			return ts, errSyntax(PayloadSA, "last-transform marker disagrees with count")
		}
		t := Transform{Type: TransformType(b[4]), ID: binary.BigEndian.Uint16(b[6:8])}
		if err := parseAttributes(&t, b[transformHeaderLen:n]); err != nil {
			return ts, err
		}
		ts = append(ts, t)
		b = b[n:]
	}
	if len(b) != 0 {
		return ts, errSyntax(PayloadSA, "transform count disagrees with proposal length")
	}
	return ts, nil
}

// parseAttributes walks a transform's attributes (RFC 7296 §3.3.5). The
// first bit of the type selects TV (two-octet value inline) or TLV format.
func parseAttributes(t *Transform, b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errSyntax(PayloadSA, "truncated transform attribute")
		}
		typ := binary.BigEndian.Uint16(b[0:2])
		v := binary.BigEndian.Uint16(b[2:4])
		if typ&attrFormatTV == 0 {
			if 4+int(v) > len(b) {
				return errSyntax(PayloadSA, "attribute length out of bounds")
			}
			if typ == AttrKeyLength {
				// §3.3.5 fixes Key Length to TV format.
				return errSyntax(PayloadSA, "key length attribute in TLV format")
			}
			t.Unsupported = true
			b = b[4+int(v):]
			continue
		}
		switch {
		case typ&^attrFormatTV != AttrKeyLength:
			t.Unsupported = true
		case t.KeyLen != 0:
			return errSyntax(PayloadSA, "duplicate key length attribute")
		case v == 0:
			t.Unsupported = true
		default:
			t.KeyLen = v
		}
		b = b[4:]
	}
	return nil
}

// AppendSA appends an SA payload body holding ps to b. The proposal numbers
// are taken from ps as they are, so a responder can echo the accepted one.
func AppendSA(b []byte, ps []Proposal) []byte {
	for i := range ps {
		p := &ps[i]
		start := len(b)
		last := byte(moreProposals)
		if i == len(ps)-1 {
			last = 0
		}
		b = append(b, last, 0, 0, 0, p.Num, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j, t := range p.Transforms {
			tlast := byte(moreTransforms)
			if j == len(p.Transforms)-1 {
				tlast = 0
			}
			n := transformHeaderLen
			if t.KeyLen != 0 {
				n += 4
			}
			b = append(b, tlast, 0, byte(n>>8), byte(n), byte(t.Type), 0, byte(t.ID>>8), byte(t.ID))
			if t.KeyLen != 0 {
				b = append(b, byte((attrFormatTV|AttrKeyLength)>>8), byte(AttrKeyLength), byte(t.KeyLen>>8), byte(t.KeyLen))
			}
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

// AddSA appends an SA payload holding ps.
func (w *Builder) AddSA(ps []Proposal) {
	w.End(AppendSA(w.Start(PayloadSA, false), ps))
}
