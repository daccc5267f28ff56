package crypto

import (
	"bytes"
	gocrypto "crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/hike-vpn/hike/internal/wire"
)

// ErrAuthFailed reports an AUTH payload that does not verify. The IKE layer
// answers it with AUTHENTICATION_FAILED (RFC 7296 §2.21.2).
var ErrAuthFailed = errors.New("crypto: authentication failed")

// ErrAuthMethod reports a key, auth method or signature algorithm hike does
// not support or that the two sides have no common ground for.
var ErrAuthMethod = errors.New("crypto: unsupported authentication method")

// SignedOctets appends the octets an AUTH payload covers (RFC 7296 §2.15)
// to dst: message | nonce | prf(skp, idBody).
//
// For the initiator message is the first message it sent (the last version
// of IKE_SA_INIT, after any COOKIE or INVALID_KE retry), nonce is Nr, skp is
// SK_pi and idBody the body of its IDi payload; the responder uses its
// IKE_SA_INIT response, Ni, SK_pr and IDr. message starts at the IKE header:
// the non-ESP marker is not part of it. idBody is the payload without its
// generic header (the ID Type, three reserved octets and the data).
func SignedOctets(dst []byte, prf *PRF, message, nonce, skp, idBody []byte) []byte {
	dst = append(dst, message...)
	dst = append(dst, nonce...)
	return prf.Sum(dst, skp, idBody)
}

// keyPad is the 17-octet pad RFC 7296 §2.15 mixes into a shared secret, with
// no terminating NUL.
const keyPad = "Key Pad for IKEv2"

// PSKAuth appends the Authentication Data of a shared-key AUTH payload (auth
// method 2) to dst: prf(prf(secret, "Key Pad for IKEv2"), signed)
// (RFC 7296 §2.15). The same formula with the EAP MSK as secret gives the
// AUTH of an EAP exchange.
func PSKAuth(dst []byte, prf *PRF, secret, signed []byte) []byte {
	var kb [64]byte
	k := prf.Sum(kb[:0], secret, []byte(keyPad))
	dst = prf.Sum(dst, k, signed)
	clear(kb[:])
	return dst
}

// VerifyPSKAuth checks shared-key Authentication Data in constant time.
func VerifyPSKAuth(prf *PRF, secret, signed, auth []byte) error {
	var buf [64]byte
	want := PSKAuth(buf[:0], prf, secret, signed)
	if !hmac.Equal(want, auth) {
		return ErrAuthFailed
	}
	return nil
}

// keyKind is the public key algorithm a signature scheme needs.
type keyKind uint8

const (
	kindRSA keyKind = iota + 1
	kindECDSA
	kindEd25519
)

// sigAlg is one RFC 7427 signature algorithm: the hash it uses (by its
// SIGNATURE_HASH_ALGORITHMS ID) and its DER AlgorithmIdentifier.
type sigAlg struct {
	kind   keyKind
	hashID uint16
	hash   gocrypto.Hash // 0 for Ed25519, which signs the message itself
	algID  []byte
}

// The AlgorithmIdentifiers of RFC 7427 Appendix A (A.1.2-A.1.4, A.3.2-A.3.4)
// and RFC 8420 Appendix A (Ed25519). RSA identifiers carry NULL parameters,
// ECDSA and EdDSA ones none. SHA-1 variants are left out: RFC 8247 §3.2.1
// says SHA-1 MUST NOT be used for signatures.
var sigAlgs = []sigAlg{
	{kindRSA, wire.HashSHA2_256, gocrypto.SHA256, []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00}},
	{kindRSA, wire.HashSHA2_384, gocrypto.SHA384, []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00}},
	{kindRSA, wire.HashSHA2_512, gocrypto.SHA512, []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00}},
	{kindECDSA, wire.HashSHA2_256, gocrypto.SHA256, []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}},
	{kindECDSA, wire.HashSHA2_384, gocrypto.SHA384, []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}},
	{kindECDSA, wire.HashSHA2_512, gocrypto.SHA512, []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}},
	{kindEd25519, wire.HashIdentity, 0, []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}},
}

func findSigAlg(kind keyKind, hashID uint16) *sigAlg {
	for i := range sigAlgs {
		if sigAlgs[i].kind == kind && sigAlgs[i].hashID == hashID {
			return &sigAlgs[i]
		}
	}
	return nil
}

// AppendSignatureHashes appends the data of hike's SIGNATURE_HASH_ALGORITHMS
// notify (RFC 7427 §4, RFC 8420 §2) to dst: the hashes hike verifies with.
func AppendSignatureHashes(dst []byte) []byte {
	for _, id := range []uint16{wire.HashSHA2_256, wire.HashSHA2_384, wire.HashSHA2_512, wire.HashIdentity} {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	return dst
}

// ParseSignatureHashes decodes a SIGNATURE_HASH_ALGORITHMS notify's data
// into a list of hash IDs, unknown ones included. An odd trailing octet is
// ignored.
func ParseSignatureHashes(data []byte) []uint16 {
	ids := make([]uint16, 0, len(data)/2)
	for ; len(data) >= 2; data = data[2:] {
		ids = append(ids, binary.BigEndian.Uint16(data))
	}
	return ids
}

func kindOf(pub gocrypto.PublicKey) keyKind {
	switch pub.(type) {
	case *rsa.PublicKey:
		return kindRSA
	case *ecdsa.PublicKey:
		return kindECDSA
	case ed25519.PublicKey:
		return kindEd25519
	}
	return 0
}

// ecdsaLegacy returns the RFC 4754 auth method for a curve and its hash.
func ecdsaLegacy(c elliptic.Curve) (wire.AuthMethod, gocrypto.Hash) {
	switch c {
	case elliptic.P256():
		return wire.AuthECDSA256, gocrypto.SHA256
	case elliptic.P384():
		return wire.AuthECDSA384, gocrypto.SHA384
	case elliptic.P521():
		return wire.AuthECDSA521, gocrypto.SHA512
	}
	return 0, 0
}

// SignAuth signs the octets of SignedOctets with key and returns the Auth
// Method and Authentication Data of the AUTH payload.
//
// peerHashes is the list from the peer's SIGNATURE_HASH_ALGORITHMS notify,
// nil if either side did not send one. With a list, SignAuth uses Digital
// Signature (method 14, RFC 7427) and a hash from the list, preferring
// SHA2-256 for RSA and the hash matching the curve for ECDSA; Ed25519 needs
// Identity (RFC 8420). Without a list, or when no hash is shared, it falls
// back to the methods of RFC 7296 and RFC 4754: RSA with SHA-1 (method 1)
// and ECDSA with raw r|s (methods 9, 10, 11).
func SignAuth(key gocrypto.Signer, peerHashes []uint16, signed []byte) (wire.AuthMethod, []byte, error) {
	kind := kindOf(key.Public())
	if kind == 0 {
		return 0, nil, ErrAuthMethod
	}
	if alg := chooseSigAlg(key.Public(), kind, peerHashes); alg != nil {
		sig, err := signWith(key, alg.hash, signed)
		if err != nil {
			return 0, nil, err
		}
		data := make([]byte, 0, 1+len(alg.algID)+len(sig))
		data = append(data, byte(len(alg.algID)))
		data = append(data, alg.algID...)
		return wire.AuthDigitalSig, append(data, sig...), nil
	}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		// RFC 7296 §3.8 method 1 is RSASSA-PKCS1-v1_5 over SHA-1, the only
		// hash IKEv2 had before RFC 7427.
		sig, err := signWith(key, gocrypto.SHA1, signed)
		return wire.AuthRSASig, sig, err
	case *ecdsa.PublicKey:
		method, h := ecdsaLegacy(pub.Curve)
		if method == 0 {
			return 0, nil, ErrAuthMethod
		}
		der, err := signWith(key, h, signed)
		if err != nil {
			return 0, nil, err
		}
		raw, err := derToRaw(der, (pub.Curve.Params().BitSize+7)/8)
		return method, raw, err
	}
	return 0, nil, ErrAuthMethod
}

func chooseSigAlg(pub gocrypto.PublicKey, kind keyKind, peer []uint16) *sigAlg {
	if len(peer) == 0 {
		return nil
	}
	prefs := []uint16{wire.HashSHA2_256, wire.HashSHA2_384, wire.HashSHA2_512}
	switch kind {
	case kindEd25519:
		prefs = []uint16{wire.HashIdentity}
	case kindECDSA:
		switch pub.(*ecdsa.PublicKey).Curve {
		case elliptic.P384():
			prefs = []uint16{wire.HashSHA2_384, wire.HashSHA2_512, wire.HashSHA2_256}
		case elliptic.P521():
			prefs = []uint16{wire.HashSHA2_512, wire.HashSHA2_384, wire.HashSHA2_256}
		}
	}
	for _, want := range prefs {
		for _, id := range peer {
			if id == want {
				return findSigAlg(kind, id)
			}
		}
	}
	return nil
}

func signWith(key gocrypto.Signer, h gocrypto.Hash, msg []byte) ([]byte, error) {
	if h == 0 {
		return key.Sign(rand.Reader, msg, gocrypto.Hash(0))
	}
	d := h.New()
	d.Write(msg)
	return key.Sign(rand.Reader, d.Sum(nil), h)
}

// derToRaw converts an ASN.1 ECDSA-Sig-Value to the r|s form of RFC 4754
// §7, each integer left-padded to the curve's octet length.
func derToRaw(der []byte, n int) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*n || s.BitLen() > 8*n {
		return nil, errors.New("crypto: malformed ECDSA signature")
	}
	raw := make([]byte, 2*n)
	r.FillBytes(raw[:n])
	s.FillBytes(raw[n:])
	return raw, nil
}

// rawToDER is the inverse of derToRaw. It returns nil only if the builder
// fails, which for two non-negative integers it cannot.
func rawToDER(raw []byte) []byte {
	n := len(raw) / 2
	var r, s big.Int
	r.SetBytes(raw[:n])
	s.SetBytes(raw[n:])
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(&r)
		b.AddASN1BigInt(&s)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil
	}
	return der
}

// VerifyAuth checks the Authentication Data of a signature AUTH payload
// against the peer's public key (typically the PublicKey of its end-entity
// x509.Certificate, after the chain was verified).
//
// accepted is the list hike sent in its own SIGNATURE_HASH_ALGORITHMS
// notify: RFC 7427 §4 has the peer pick from it, so a method 14 signature
// over another hash is refused. nil accepts every hash hike supports.
// Method 14 also requires the AlgorithmIdentifier to fit the key.
func VerifyAuth(pub gocrypto.PublicKey, method wire.AuthMethod, data, signed []byte, accepted []uint16) error {
	switch method {
	case wire.AuthRSASig:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return ErrAuthMethod
		}
		return verifyRSA(k, gocrypto.SHA1, signed, data)
	case wire.AuthECDSA256, wire.AuthECDSA384, wire.AuthECDSA521:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return ErrAuthMethod
		}
		m, h := ecdsaLegacy(k.Curve)
		if m != method {
			// RFC 4754 ties each method to one curve.
			return ErrAuthMethod
		}
		if len(data) != 2*((k.Curve.Params().BitSize+7)/8) {
			return ErrAuthFailed
		}
		return verifyECDSA(k, h, signed, rawToDER(data))
	case wire.AuthDigitalSig:
		if len(data) < 1 || len(data) < 1+int(data[0]) {
			return ErrAuthFailed
		}
		id, sig := data[1:1+int(data[0])], data[1+int(data[0]):]
		var alg *sigAlg
		for i := range sigAlgs {
			if bytes.Equal(sigAlgs[i].algID, id) {
				alg = &sigAlgs[i]
			}
		}
		if alg == nil || alg.kind != kindOf(pub) {
			return ErrAuthMethod
		}
		if accepted != nil && !containsHash(accepted, alg.hashID) {
			return ErrAuthMethod
		}
		switch k := pub.(type) {
		case *rsa.PublicKey:
			return verifyRSA(k, alg.hash, signed, sig)
		case *ecdsa.PublicKey:
			return verifyECDSA(k, alg.hash, signed, sig)
		case ed25519.PublicKey:
			// ed25519.Verify panics on a key of the wrong length.
			if len(k) != ed25519.PublicKeySize || !ed25519.Verify(k, signed, sig) {
				return ErrAuthFailed
			}
			return nil
		}
	}
	return ErrAuthMethod
}

func containsHash(ids []uint16, id uint16) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func verifyRSA(k *rsa.PublicKey, h gocrypto.Hash, msg, sig []byte) error {
	d := h.New()
	d.Write(msg)
	if rsa.VerifyPKCS1v15(k, h, d.Sum(nil), sig) != nil {
		return ErrAuthFailed
	}
	return nil
}

func verifyECDSA(k *ecdsa.PublicKey, h gocrypto.Hash, msg, der []byte) error {
	d := h.New()
	d.Write(msg)
	if !ecdsa.VerifyASN1(k, d.Sum(nil), der) {
		return ErrAuthFailed
	}
	return nil
}
