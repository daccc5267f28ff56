package wire

// Nonce sizes allowed by RFC 7296 §3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// ParseNonce returns the nonce of a Nonce payload body, which is all of it.
// RFC 7296 §3.9 bounds its size to 16..256 octets.
func ParseNonce(body []byte) ([]byte, error) {
	if len(body) < MinNonceLen || len(body) > MaxNonceLen {
		return nil, errSyntax(PayloadNonce, "nonce size out of range")
	}
	return body, nil
}

// AddNonce appends a Nonce payload.
func (w *Builder) AddNonce(nonce []byte) { w.Add(PayloadNonce, nonce) }
