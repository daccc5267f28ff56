package wire

// Cert is a view of a CERT payload (RFC 7296 §3.6). Data aliases the parsed
// buffer.
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// ParseCert decodes a CERT payload body.
func ParseCert(body []byte) (Cert, error) {
	if len(body) < 1 {
		return Cert{}, errSyntax(PayloadCERT, "truncated certificate")
	}
	return Cert{Encoding: CertEncoding(body[0]), Data: body[1:]}, nil
}

// Append appends the CERT payload body to b.
func (c *Cert) Append(b []byte) []byte {
	return append(append(b, byte(c.Encoding)), c.Data...)
}

// AddCert appends a CERT payload.
func (w *Builder) AddCert(c Cert) {
	w.End(c.Append(w.Start(PayloadCERT, false)))
}

// CertReq is a view of a CERTREQ payload (RFC 7296 §3.7). For X.509
// encodings Authorities is a concatenation of 20-octet SHA-1 hashes of
// trusted CAs' public keys; it aliases the parsed buffer.
type CertReq struct {
	Encoding    CertEncoding
	Authorities []byte
}

// CAHashLen is the size of one Certification Authority entry of an X.509
// CERTREQ (RFC 7296 §3.7).
const CAHashLen = 20

// ParseCertReq decodes a CERTREQ payload body. For X.509 Certificate -
// Signature the authority list must be whole hashes.
func ParseCertReq(body []byte) (CertReq, error) {
	if len(body) < 1 {
		return CertReq{}, errSyntax(PayloadCERTREQ, "truncated certificate request")
	}
	c := CertReq{Encoding: CertEncoding(body[0]), Authorities: body[1:]}
	if c.Encoding == CertX509Signature && len(c.Authorities)%CAHashLen != 0 {
		return CertReq{}, errSyntax(PayloadCERTREQ, "partial CA hash")
	}
	return c, nil
}

// NumAuthorities returns how many CA hashes an X.509 CERTREQ lists.
func (c *CertReq) NumAuthorities() int { return len(c.Authorities) / CAHashLen }

// Authority returns the i-th CA hash, aliasing the parsed buffer.
func (c *CertReq) Authority(i int) []byte {
	return c.Authorities[i*CAHashLen : (i+1)*CAHashLen]
}

// Append appends the CERTREQ payload body to b.
func (c *CertReq) Append(b []byte) []byte {
	return append(append(b, byte(c.Encoding)), c.Authorities...)
}

// AddCertReq appends a CERTREQ payload.
func (w *Builder) AddCertReq(c CertReq) {
	w.End(c.Append(w.Start(PayloadCERTREQ, false)))
}
