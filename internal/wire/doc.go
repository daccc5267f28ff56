// Package wire encodes and decodes IKEv2 messages (RFC 7296, RFC 7383).
//
// The package is pure: it knows the octets, not the protocol state. Parsing
// never copies: parsed values are views into the caller's buffer and stay
// valid only as long as it does. Encoders append to a caller's buffer so that
// the hot path (DPD, RFC 6311 sync) can run without allocating.
//
// Every parse error is an *Error that names the notify a responder owes for
// it (INVALID_SYNTAX, or UNSUPPORTED_CRITICAL_PAYLOAD with the payload type),
// so the state machine never has to guess how to answer malformed input.
package wire
