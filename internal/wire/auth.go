package wire

// Auth is a view of an Authentication payload (RFC 7296 §3.8). Data aliases
// the parsed buffer. For AuthDigitalSig it starts with the RFC 7427 §3
// AlgorithmIdentifier; the crypto layer splits it.
type Auth struct {
	Method AuthMethod
	Data   []byte
}

const authHeaderLen = 4

// ParseAuth decodes an AUTH payload body. Empty authentication data can
// never verify, so it is rejected here as malformed.
func ParseAuth(body []byte) (Auth, error) {
	if len(body) <= authHeaderLen {
		return Auth{}, errSyntax(PayloadAUTH, "truncated authentication")
	}
	return Auth{Method: AuthMethod(body[0]), Data: body[authHeaderLen:]}, nil
}

// Append appends the AUTH payload body to b.
func (a *Auth) Append(b []byte) []byte {
	return append(append(b, byte(a.Method), 0, 0, 0), a.Data...)
}

// AddAuth appends an AUTH payload.
func (w *Builder) AddAuth(a Auth) {
	w.End(a.Append(w.Start(PayloadAUTH, false)))
}
