package wire

// Error is a parse failure. It carries what a responder owes the sender:
// RFC 7296 §2.21 answers malformed requests with INVALID_SYNTAX, and §2.5
// answers an unknown critical payload with UNSUPPORTED_CRITICAL_PAYLOAD whose
// data is the one-octet payload type.
type Error struct {
	Notify  NotifyType  // INVALID_SYNTAX or UNSUPPORTED_CRITICAL_PAYLOAD
	Payload PayloadType // the payload being parsed, or the unsupported critical type
	Reason  string      // constant text; never built from packet contents
}

func (e *Error) Error() string {
	if e.Notify == UNSUPPORTED_CRITICAL_PAYLOAD {
		return "wire: unsupported critical payload " + e.Payload.String()
	}
	if e.Payload != PayloadNone {
		return "wire: " + e.Payload.String() + ": " + e.Reason
	}
	return "wire: " + e.Reason
}

// NotifyData returns the data of the notify owed for e: the payload type
// for UNSUPPORTED_CRITICAL_PAYLOAD, nothing otherwise.
func (e *Error) NotifyData() []byte {
	if e.Notify == UNSUPPORTED_CRITICAL_PAYLOAD {
		return []byte{byte(e.Payload)}
	}
	return nil
}

// errSyntax builds the common INVALID_SYNTAX error. Errors are only built on
// the failure path, so the allocation does not touch the hot path.
func errSyntax(p PayloadType, reason string) error {
	return &Error{Notify: INVALID_SYNTAX, Payload: p, Reason: reason}
}
