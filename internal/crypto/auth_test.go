package crypto

import (
	gocrypto "crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

func TestSignedOctets(t *testing.T) {
	prf, _ := LookupPRF(wire.PRF_HMAC_SHA2_256)
	msg, nonce, skp := []byte("IKE_SA_INIT octets"), []byte("nonce-of-the-peer"), []byte("SK_pi key")
	id := []byte{byte(wire.ID_FQDN), 0, 0, 0, 'v', 'p', 'n'}
	m := hmac.New(sha256.New, skp)
	m.Write(id)
	want := append(append(append([]byte{}, msg...), nonce...), m.Sum(nil)...)
	got := SignedOctets([]byte{}, prf, msg, nonce, skp, id)
	if string(got) != string(want) {
		t.Fatalf("signed octets\n got %x\nwant %x", got, want)
	}
}

// TestPSKAuthKnownAnswer computes RFC 7296 §2.15's
// prf(prf(Shared Secret, "Key Pad for IKEv2"), <signed octets>) with
// crypto/hmac directly, for HMAC-SHA2-256 and HMAC-SHA2-512.
func TestPSKAuthKnownAnswer(t *testing.T) {
	secret := []byte("a pre-shared key of the test")
	signed := []byte("RealMessage1 | Nr | prf(SK_pi, IDi')")
	pad := []byte{'K', 'e', 'y', ' ', 'P', 'a', 'd', ' ', 'f', 'o', 'r', ' ', 'I', 'K', 'E', 'v', '2'}
	if len(pad) != 17 {
		t.Fatal("the pad is 17 octets")
	}
	k := hmac.New(sha256.New, secret)
	k.Write(pad)
	a := hmac.New(sha256.New, k.Sum(nil))
	a.Write(signed)
	want256 := a.Sum(nil)
	k = hmac.New(sha512.New, secret)
	k.Write(pad)
	a = hmac.New(sha512.New, k.Sum(nil))
	a.Write(signed)
	want512 := a.Sum(nil)

	for id, want := range map[uint16][]byte{wire.PRF_HMAC_SHA2_256: want256, wire.PRF_HMAC_SHA2_512: want512} {
		prf, _ := LookupPRF(id)
		if got := PSKAuth(nil, prf, secret, signed); string(got) != string(want) {
			t.Fatalf("PRF %d: got %x want %x", id, got, want)
		}
		if err := VerifyPSKAuth(prf, secret, signed, want); err != nil {
			t.Fatalf("PRF %d: genuine AUTH refused: %v", id, err)
		}
		for i := range want {
			bad := append([]byte{}, want...)
			bad[i] ^= 0x80
			if !errors.Is(VerifyPSKAuth(prf, secret, signed, bad), ErrAuthFailed) {
				t.Fatalf("tampered octet %d accepted", i)
			}
		}
		if VerifyPSKAuth(prf, secret, signed, want[:len(want)-1]) == nil {
			t.Fatal("truncated AUTH accepted")
		}
		if VerifyPSKAuth(prf, []byte("another secret"), signed, want) == nil {
			t.Fatal("wrong secret accepted")
		}
	}
}

// TestAlgorithmIdentifiers compares hike's AlgorithmIdentifiers with the
// hex dumps of RFC 7427 Appendix A.1.2-A.1.4 and A.3.2-A.3.4 and RFC 8420
// Appendix A (Ed25519), and checks that each decodes to the OID its RFC
// names.
func TestAlgorithmIdentifiers(t *testing.T) {
	cases := []struct {
		kind keyKind
		hash uint16
		rfc  string // the RFC's hex dump
		oid  asn1.ObjectIdentifier
		null bool
	}{
		// RFC 7427 A.1.2 sha256WithRSAEncryption, 1.2.840.113549.1.1.11
		{kindRSA, wire.HashSHA2_256, "300d 0609 2a86 4886 f70d 0101 0b05 00", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, true},
		// RFC 7427 A.1.3 sha384WithRSAEncryption, 1.2.840.113549.1.1.12
		{kindRSA, wire.HashSHA2_384, "300d 0609 2a86 4886 f70d 0101 0c05 00", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, true},
		// RFC 7427 A.1.4 sha512WithRSAEncryption, 1.2.840.113549.1.1.13
		{kindRSA, wire.HashSHA2_512, "300d 0609 2a86 4886 f70d 0101 0d05 00", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, true},
		// RFC 7427 A.3.2 ecdsa-with-sha256, 1.2.840.10045.4.3.2
		{kindECDSA, wire.HashSHA2_256, "300a 0608 2a86 48ce 3d04 0302", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, false},
		// RFC 7427 A.3.3 ecdsa-with-sha384, 1.2.840.10045.4.3.3
		{kindECDSA, wire.HashSHA2_384, "300a 0608 2a86 48ce 3d04 0303", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, false},
		// RFC 7427 A.3.4 ecdsa-with-sha512, 1.2.840.10045.4.3.4
		{kindECDSA, wire.HashSHA2_512, "300a 0608 2a86 48ce 3d04 0304", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, false},
		// RFC 8420 Appendix A: id-Ed25519, 1.3.101.112 (RFC 8410 §3)
		{kindEd25519, wire.HashIdentity, "3005 0603 2b65 70", asn1.ObjectIdentifier{1, 3, 101, 112}, false},
	}
	if len(cases) != len(sigAlgs) {
		t.Fatalf("%d algorithms in the table, %d checked", len(sigAlgs), len(cases))
	}
	for _, c := range cases {
		want, err := hex.DecodeString(strings.ReplaceAll(c.rfc, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		alg := findSigAlg(c.kind, c.hash)
		if alg == nil {
			t.Fatalf("%v: not in the table", c.oid)
		}
		if string(alg.algID) != string(want) {
			t.Fatalf("%v: hike has %x, RFC has %x", c.oid, alg.algID, want)
		}
		var ai pkix.AlgorithmIdentifier
		if rest, err := asn1.Unmarshal(alg.algID, &ai); err != nil || len(rest) != 0 {
			t.Fatalf("%v: %v", c.oid, err)
		}
		if !ai.Algorithm.Equal(c.oid) || (len(ai.Parameters.FullBytes) != 0) != c.null {
			t.Fatalf("decodes to %v params %x, want %v", ai.Algorithm, ai.Parameters.FullBytes, c.oid)
		}
	}
}

var (
	keysOnce sync.Once
	testRSA  *rsa.PrivateKey
)

// certKey issues a self-signed certificate for key and returns the public
// key as x509 parses it back, the way the IKE layer will get it.
func certKey(t *testing.T, key gocrypto.Signer) gocrypto.PublicKey {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "peer.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert.PublicKey
}

func testSigners(t *testing.T) map[string]gocrypto.Signer {
	keysOnce.Do(func() {
		var err error
		if testRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	m := map[string]gocrypto.Signer{"RSA-2048": testRSA}
	for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = k
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m["Ed25519"] = ed
	return m
}

func TestSignVerifyAllMethods(t *testing.T) {
	signed := []byte("RealMessage2 | Ni | prf(SK_pr, IDr')")
	all := []uint16{wire.HashSHA2_256, wire.HashSHA2_384, wire.HashSHA2_512, wire.HashIdentity}
	type want struct {
		method wire.AuthMethod
		algID  []byte // nil for the legacy methods
		rawLen int    // RFC 4754 r|s length, 0 if not raw
	}
	cases := []struct {
		key   string
		peer  []uint16
		want  want
		fails bool
	}{
		{"RSA-2048", nil, want{wire.AuthRSASig, nil, 0}, false},
		{"RSA-2048", all, want{wire.AuthDigitalSig, findSigAlg(kindRSA, wire.HashSHA2_256).algID, 0}, false},
		{"RSA-2048", []uint16{wire.HashSHA2_384}, want{wire.AuthDigitalSig, findSigAlg(kindRSA, wire.HashSHA2_384).algID, 0}, false},
		{"RSA-2048", []uint16{wire.HashSHA2_512}, want{wire.AuthDigitalSig, findSigAlg(kindRSA, wire.HashSHA2_512).algID, 0}, false},
		{"RSA-2048", []uint16{wire.HashSHA1}, want{wire.AuthRSASig, nil, 0}, false},
		{"P-256", nil, want{wire.AuthECDSA256, nil, 64}, false},
		{"P-384", nil, want{wire.AuthECDSA384, nil, 96}, false},
		{"P-521", nil, want{wire.AuthECDSA521, nil, 132}, false},
		{"P-256", all, want{wire.AuthDigitalSig, findSigAlg(kindECDSA, wire.HashSHA2_256).algID, 0}, false},
		{"P-384", all, want{wire.AuthDigitalSig, findSigAlg(kindECDSA, wire.HashSHA2_384).algID, 0}, false},
		{"P-521", all, want{wire.AuthDigitalSig, findSigAlg(kindECDSA, wire.HashSHA2_512).algID, 0}, false},
		{"P-256", []uint16{wire.HashSHA2_512}, want{wire.AuthDigitalSig, findSigAlg(kindECDSA, wire.HashSHA2_512).algID, 0}, false},
		{"Ed25519", all, want{wire.AuthDigitalSig, findSigAlg(kindEd25519, wire.HashIdentity).algID, 0}, false},
		{"Ed25519", []uint16{wire.HashSHA2_256}, want{}, true},
		{"Ed25519", nil, want{}, true},
	}
	signers := testSigners(t)
	for _, c := range cases {
		key := signers[c.key]
		method, data, err := SignAuth(key, c.peer, signed)
		if c.fails {
			if err == nil {
				t.Fatalf("%s with peer hashes %v: signed with method %d", c.key, c.peer, method)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s %v: %v", c.key, c.peer, err)
		}
		if method != c.want.method {
			t.Fatalf("%s %v: method %d, want %d", c.key, c.peer, method, c.want.method)
		}
		if c.want.algID != nil && (int(data[0]) != len(c.want.algID) || string(data[1:1+data[0]]) != string(c.want.algID)) {
			t.Fatalf("%s %v: data starts %x", c.key, c.peer, data[:16])
		}
		if c.want.rawLen != 0 && len(data) != c.want.rawLen {
			t.Fatalf("%s: raw ECDSA signature of %d octets, want %d", c.key, len(data), c.want.rawLen)
		}
		pub := certKey(t, key)
		independentVerify(t, pub, method, data, signed)
		if err := VerifyAuth(pub, method, data, signed, nil); err != nil {
			t.Fatalf("%s %v: own signature refused: %v", c.key, c.peer, err)
		}
		if c.peer != nil {
			if err := VerifyAuth(pub, method, data, signed, c.peer); err != nil {
				t.Fatalf("%s %v: refused with the list it was made from: %v", c.key, c.peer, err)
			}
		}
		// Tampering with the signed octets or the signature must fail.
		bad := append([]byte{}, signed...)
		bad[3] ^= 1
		if !errors.Is(VerifyAuth(pub, method, data, bad, nil), ErrAuthFailed) {
			t.Fatalf("%s: tampered octets accepted", c.key)
		}
		sig := append([]byte{}, data...)
		sig[len(sig)-5] ^= 0x10
		if VerifyAuth(pub, method, sig, signed, nil) == nil {
			t.Fatalf("%s: tampered signature accepted", c.key)
		}
		if VerifyAuth(pub, method, data[:len(data)-1], signed, nil) == nil {
			t.Fatalf("%s: truncated signature accepted", c.key)
		}
		// Another key of the same kind must not verify it.
		other := map[string]string{"RSA-2048": "P-256", "P-256": "P-384", "P-384": "P-256", "P-521": "P-256", "Ed25519": "P-256"}[c.key]
		if VerifyAuth(certKey(t, signers[other]), method, data, signed, nil) == nil {
			t.Fatalf("%s: verified with the %s key", c.key, other)
		}
	}
}

func TestVerifyAuthPolicy(t *testing.T) {
	signers := testSigners(t)
	signed := []byte("octets")
	k := signers["P-256"]
	pub := certKey(t, k)
	_, data, err := SignAuth(k, []uint16{wire.HashSHA2_512}, signed)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 7427 §4: the peer must pick a hash we announced.
	if !errors.Is(VerifyAuth(pub, wire.AuthDigitalSig, data, signed, []uint16{wire.HashSHA2_256}), ErrAuthMethod) {
		t.Fatal("signature over a hash we did not announce accepted")
	}
	// RFC 4754: method 10 is P-384 only.
	_, raw, _ := SignAuth(k, nil, signed)
	if !errors.Is(VerifyAuth(pub, wire.AuthECDSA384, raw, signed, nil), ErrAuthMethod) {
		t.Fatal("P-256 signature accepted as method 10")
	}
	// An RSA AlgorithmIdentifier on an ECDSA key.
	rsaID := findSigAlg(kindRSA, wire.HashSHA2_256).algID
	forged := append(append([]byte{byte(len(rsaID))}, rsaID...), data[1+data[0]:]...)
	if VerifyAuth(pub, wire.AuthDigitalSig, forged, signed, nil) == nil {
		t.Fatal("AlgorithmIdentifier of another key type accepted")
	}
	// The SHA-1 identifier of RFC 7427 A.3.1 is refused (RFC 8247 §3.2.1).
	sha1ID := []byte{0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01}
	forged = append(append([]byte{byte(len(sha1ID))}, sha1ID...), data[1+data[0]:]...)
	if !errors.Is(VerifyAuth(pub, wire.AuthDigitalSig, forged, signed, nil), ErrAuthMethod) {
		t.Fatal("ecdsa-with-SHA1 accepted")
	}
	for _, d := range [][]byte{nil, {}, {0xff}, {0x05, 0x30}} {
		if VerifyAuth(pub, wire.AuthDigitalSig, d, signed, nil) == nil {
			t.Fatalf("malformed data %x accepted", d)
		}
	}
	if VerifyAuth(pub, wire.AuthSharedKey, data, signed, nil) == nil {
		t.Fatal("PSK method accepted by VerifyAuth")
	}
}

func TestSignatureHashesNotify(t *testing.T) {
	d := AppendSignatureHashes(nil)
	// RFC 7427 §4: 16-bit IDs, no padding; SHA2-256 2, -384 3, -512 4, and
	// Identity 5 from RFC 8420 §2.
	if hex.EncodeToString(d) != "0002000300040005" {
		t.Fatalf("notify data %x", d)
	}
	got := ParseSignatureHashes([]byte{0, 2, 0x04, 0x00, 0})
	if len(got) != 2 || got[0] != 2 || got[1] != 0x400 {
		t.Fatalf("parsed %v", got)
	}
}

// TestECDSAKnownAnswer verifies the signatures of RFC 4754 §8.1-§8.3
// (methods 9, 10 and 11, message "abc").
func TestECDSAKnownAnswer(t *testing.T) {
	type vector struct {
		curve   elliptic.Curve
		method  wire.AuthMethod
		gwx     string
		gwy     string
		payload string // the AUTH payload as the RFC prints it
	}
	cases := []vector{
		{
			elliptic.P256(), wire.AuthECDSA256,
			"2442A5CC 0ECD015F A3CA31DC 8E2BBC70 BF42D60C BCA20085 E0822CB0 4235E970",
			"6FC98BD7 E50211A4 A27102FA 3549DF79 EBCB4BF2 46B80945 CDDFE7D5 09BBFD7D",
			`00000048 00090000 CB28E099 9B9C7715 FD0A80D8 E47A7707 9716CBBF 917DD72E
			 97566EA1 C066957C 86FA3BB4 E26CAD5B F90B7F81 899256CE 7594BB1E A0C89212
			 748BFF3B 3D5B0315`,
		},
		{
			elliptic.P384(), wire.AuthECDSA384,
			"96281BF8 DD5E0525 CA049C04 8D345D30 82968D10 FEDF5C5A CA0C64E6 465A97EA 5CE10C9D FEC21797 41571072 1F437922",
			"447688BA 94708EB6 E2E4D59F 6AB6D7ED FF9301D2 49FE49C3 3096655F 5D502FAD 3D383B91 C5E7EDAA 2B714CC9 9D5743CA",
			`00000068 000A0000 FB017B91 4E291494 32D8BAC2 9A514640 B46F53DD AB2C6994
			 8084E293 0F1C8F7E 08E07C9C 63F2D21A 07DCB56A 6AF56EB3 B263A130 5E057F98
			 4D38726A 1B468741 09F417BC A112674C 528262A4 0A629AF1 CBB9F516 CE0FA7D2
			 FF630863 A00E8B9F`,
		},
	}
	// §8.3 prints r and s on their own; the AUTH data is their concatenation
	// (RFC 4754 §7: 528 bits each).
	cases = append(cases, vector{
		elliptic.P521(), wire.AuthECDSA521,
		`0151518F 1AF0F563 517EDD54 85190DF9 5A4BF57B 5CBA4CF2 A9A3F647 4725A35F
		 7AFE0A6D DEB8BEDB CD6A197E 592D4018 8901CECD 650699C9 B5E456AE A5ADD190 52A8`,
		`006F3B14 2EA1BFFF 7E2837AD 44C9E4FF 6D2D34C7 3184BBAD 90026DD5 E6E85317
		 D9DF45CA D7803C6C 20035B2F 3FF63AFF 4E1BA64D 1C077577 DA3F4286 C58F0AEA E643`,
		`0000008C 000B0000
		 0154FD38 36AF92D0 DCA57DD5 341D3053 988534FD E8318FC6 AAAAB68E 2E6F4339
		 B19F2F28 1A7E0B22 C269D93C F8794A92 78880ED7 DBB8D936 2CAEACEE 54432055 2251
		 017705A7 030290D1 CEB605A9 A1BB03FF 9CDD521E 87A696EC 926C8C10 C8362DF4
		 97536710 1F67D1CF 9BCCBF2F 3D239534 FA509E70 AAC851AE 01AAC68D 62F86647 2660`,
	})
	for _, c := range cases {
		point := append([]byte{4}, hexFields(t, c.gwx)...)
		point = append(point, hexFields(t, c.gwy)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(c.curve, point)
		if err != nil {
			t.Fatal(err)
		}
		p := hexFields(t, c.payload)
		// The RFC prints the method in the second octet after the generic
		// header (00 09 00 00), where RFC 7296 §3.8 has it in the first;
		// the signature starts after these four octets either way.
		method, data := c.method, p[8:]
		if len(data) != 2*((c.curve.Params().BitSize+7)/8) {
			t.Fatalf("vector holds %d signature octets", len(data))
		}
		if err := VerifyAuth(pub, method, data, []byte("abc"), nil); err != nil {
			t.Fatalf("%s: RFC 4754 signature refused: %v", c.curve.Params().Name, err)
		}
		if VerifyAuth(pub, method, data, []byte("abd"), nil) == nil {
			t.Fatalf("%s: verified another message", c.curve.Params().Name)
		}
	}
}

// independentVerify checks AUTH data with the standard library alone,
// following RFC 7296 §3.8 (method 1: PKCS#1 v1.5 over SHA-1), RFC 4754 §7
// (r|s) and RFC 7427 §3 (length, AlgorithmIdentifier, signature).
func independentVerify(t *testing.T, pub gocrypto.PublicKey, method wire.AuthMethod, data, signed []byte) {
	t.Helper()
	digest := func(h gocrypto.Hash) []byte {
		d := h.New()
		d.Write(signed)
		return d.Sum(nil)
	}
	switch method {
	case wire.AuthRSASig:
		if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), gocrypto.SHA1, digest(gocrypto.SHA1), data); err != nil {
			t.Fatalf("method 1: %v", err)
		}
	case wire.AuthECDSA256, wire.AuthECDSA384, wire.AuthECDSA521:
		h := map[wire.AuthMethod]gocrypto.Hash{wire.AuthECDSA256: gocrypto.SHA256, wire.AuthECDSA384: gocrypto.SHA384, wire.AuthECDSA521: gocrypto.SHA512}[method]
		n := len(data) / 2
		r, s := new(big.Int).SetBytes(data[:n]), new(big.Int).SetBytes(data[n:])
		if !ecdsa.Verify(pub.(*ecdsa.PublicKey), digest(h), r, s) {
			t.Fatalf("method %d: r|s does not verify", method)
		}
	case wire.AuthDigitalSig:
		var ai pkix.AlgorithmIdentifier
		n := int(data[0])
		if rest, err := asn1.Unmarshal(data[1:1+n], &ai); err != nil || len(rest) != 0 {
			t.Fatalf("method 14: AlgorithmIdentifier: %v", err)
		}
		sig := data[1+n:]
		oids := map[string]gocrypto.Hash{
			"1.2.840.113549.1.1.11": gocrypto.SHA256, "1.2.840.113549.1.1.12": gocrypto.SHA384, "1.2.840.113549.1.1.13": gocrypto.SHA512,
			"1.2.840.10045.4.3.2": gocrypto.SHA256, "1.2.840.10045.4.3.3": gocrypto.SHA384, "1.2.840.10045.4.3.4": gocrypto.SHA512,
		}
		switch k := pub.(type) {
		case *rsa.PublicKey:
			h := oids[ai.Algorithm.String()]
			if err := rsa.VerifyPKCS1v15(k, h, digest(h), sig); err != nil {
				t.Fatalf("method 14 %v: %v", ai.Algorithm, err)
			}
		case *ecdsa.PublicKey:
			h := oids[ai.Algorithm.String()]
			if !ecdsa.VerifyASN1(k, digest(h), sig) {
				t.Fatalf("method 14 %v: DER signature does not verify", ai.Algorithm)
			}
		case ed25519.PublicKey:
			if ai.Algorithm.String() != "1.3.101.112" || !ed25519.Verify(k, signed, sig) {
				t.Fatalf("method 14 %v: Ed25519 signature does not verify", ai.Algorithm)
			}
		}
	default:
		t.Fatalf("unexpected method %d", method)
	}
}
