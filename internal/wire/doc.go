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
//
// Parsing is layered. Message.Parse (or ParseHeader and ParseChain) splits a
// datagram into the header and generic payload views; each payload kind has
// its own file with a typed view, a ParseXxx function over the payload body
// (the octets after the generic header) and an Append method or AppendXxx
// function for the body. Typed parsers that produce lists (ParseSA, ParseTS,
// ParseCP) append to a caller's slice. Notify data that hike interprets is
// checked by ParseNotify and decoded by accessors on Notify.
//
// Encoding goes through a Builder, which links Next Payload fields and fills
// lengths. Each kind has a convenience method (AddSA, AddNotify, ...); for
// anything else, Start opens a payload, the caller appends the body, End
// closes it:
//
//	w.Reset(buf[:0], hdr)
//	w.AddMessageIDSync(wire.MessageIDSync{Nonce: n, SendReq: m1, RecvReq: p1})
//	msg := w.Finish()
//
// SK and SKF payloads stay opaque here (Encrypted): the crypto layer splits
// IV, ciphertext and ICV, and parses the decrypted inner chain with
// ParseChain starting at Encrypted.Next.
package wire
