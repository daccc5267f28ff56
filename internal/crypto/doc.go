// Package crypto holds IKEv2's transforms (ENCR, PRF, INTEG, DH), the key
// derivation of RFC 7296 §2.13-2.18, SK payload protection (RFC 7296 §3.14,
// RFC 5282, RFC 7383) and AUTH payload computation (RFC 7296 §2.15,
// RFC 7427). Everything is built on the Go standard library and
// golang.org/x/crypto; this package only composes them the way IKEv2 asks.
//
// Transforms are looked up by their IANA IDs (the constants of package wire)
// and are immutable values shared by every SA that negotiated them.
package crypto
