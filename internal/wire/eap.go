package wire

import "encoding/binary"

// EAP codes (RFC 3748 §4).
const (
	EAPRequest  uint8 = 1
	EAPResponse uint8 = 2
	EAPSuccess  uint8 = 3
	EAPFailure  uint8 = 4
)

// EAP is a view of an EAP payload (RFC 7296 §3.16), which carries exactly
// one EAP message (RFC 3748 §4). Raw is the whole message, the unit an EAP
// method or a RADIUS server consumes; Type and Data are set for Requests
// and Responses only. All alias the parsed buffer.
type EAP struct {
	Code       uint8
	Identifier uint8
	Type       uint8
	Data       []byte
	Raw        []byte
}

const eapHeaderLen = 4

// ParseEAP decodes an EAP payload body. The EAP Length field must equal the
// payload body length: RFC 7296 §3.16 allows nothing else in the payload.
func ParseEAP(body []byte) (EAP, error) {
	if len(body) < eapHeaderLen {
		return EAP{}, errSyntax(PayloadEAP, "truncated EAP message")
	}
	if int(binary.BigEndian.Uint16(body[2:4])) != len(body) {
		return EAP{}, errSyntax(PayloadEAP, "EAP length disagrees with payload length")
	}
	e := EAP{Code: body[0], Identifier: body[1], Raw: body}
	switch e.Code {
	case EAPRequest, EAPResponse:
		if len(body) < eapHeaderLen+1 {
			return EAP{}, errSyntax(PayloadEAP, "EAP request or response without type")
		}
		e.Type = body[eapHeaderLen]
		e.Data = body[eapHeaderLen+1:]
	case EAPSuccess, EAPFailure:
		if len(body) != eapHeaderLen {
			return EAP{}, errSyntax(PayloadEAP, "EAP success or failure with data")
		}
	default:
		return EAP{}, errSyntax(PayloadEAP, "unknown EAP code")
	}
	return e, nil
}

// Append appends the EAP payload body to b, computing the EAP Length.
// Type and Data are written for Requests and Responses only.
func (e *EAP) Append(b []byte) []byte {
	start := len(b)
	b = append(b, e.Code, e.Identifier, 0, 0)
	if e.Code == EAPRequest || e.Code == EAPResponse {
		b = append(append(b, e.Type), e.Data...)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

// AddEAP appends an EAP payload.
func (w *Builder) AddEAP(e EAP) {
	w.End(e.Append(w.Start(PayloadEAP, false)))
}
