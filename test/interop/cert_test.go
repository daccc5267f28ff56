package interop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pki is a throw-away CA made for one test.
type pki struct {
	t    *testing.T
	cert *x509.Certificate
	key  crypto.Signer
}

func newKey(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key type %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randSerial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newPKI makes a self-signed ECDSA P-256 CA named cn.
func newPKI(t *testing.T, cn string) *pki {
	t.Helper()
	key := newKey(t, "ecdsa")
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(t),
		Subject:               pkix.Name{Country: []string{"CH"}, Organization: []string{"hike interop"}, CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, cert: cert, key: key}
}

// issue makes an end-entity certificate with subject C=CH, O=hike interop,
// CN=cn and cn as its DNS subjectAltName, and returns the certificate and
// key in PEM (PKCS #8).
func (p *pki) issue(kind, cn string) (certPEM, keyPEM []byte) {
	p.t.Helper()
	key := newKey(p.t, kind)
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(p.t),
		Subject:      pkix.Name{Country: []string{"CH"}, Organization: []string{"hike interop"}, CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

func (p *pki) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw})
}

// dn is the subject DN issue gives cn, as both hike and strongSwan write it.
func dn(cn string) string { return "C=CH, O=hike interop, CN=" + cn }

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o700))
	must(t, os.WriteFile(path, b, 0o600))
}

// certSetup is one certificate-authenticated pair: hike as gw.example and
// strongSwan as client.example, each with a key of the given type.
type certSetup struct {
	kind             string
	hikeID, swanID   string // identities each side sends
	hikeWants        string // hike's remote.id for the client
	swanWants        string // strongSwan's remote id for hike
	hikeCAs, swanCAs *pki
}

// writeCreds writes hike's files into e.dir and strongSwan's into its
// swanctl directory, which swan.Start loads from. It returns the DER
// subject of strongSwan's certificate.
func (e *env) writeCreds(s certSetup, issuerHike, issuerSwan *pki, i int) []byte {
	cert, key := issuerHike.issue(s.kind, "gw.example")
	writeFile(e.t, filepath.Join(e.dir, "gw.pem"), cert)
	writeFile(e.t, filepath.Join(e.dir, "gw.key"), key)
	writeFile(e.t, filepath.Join(e.dir, "ca.pem"), s.hikeCAs.pem())
	sdir := filepath.Join(e.dir, fmt.Sprintf("swan%d", i))
	cert, key = issuerSwan.issue(s.kind, "client.example")
	writeFile(e.t, filepath.Join(sdir, "x509", "client.pem"), cert)
	writeFile(e.t, filepath.Join(sdir, "private", "client.key"), key)
	writeFile(e.t, filepath.Join(sdir, "x509ca", "ca.pem"), s.swanCAs.pem())
	b, _ := pem.Decode(cert)
	c, err := x509.ParseCertificate(b.Bytes)
	must(e.t, err)
	return c.RawSubject
}

// swanCertConf is a strongSwan connection to the gateway with certificates;
// it initiates or responds alike.
func swanCertConf(c *client, s certSetup, extra string) string {
	return fmt.Sprintf(`connections {
    gw {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        proposals = aes256gcm16-prfsha256-x25519
        %s
        local {
            auth = pubkey
            certs = client.pem
            id = "%s"
        }
        remote {
            auth = pubkey
            id = "%s"
        }
        children {
            net {
                local_ts = %s/32
                remote_ts = 10.97.0.0/16
                esp_proposals = aes256gcm16
            }
        }
    }
}
`, c.outer, gwAddr, extra, s.swanID, s.swanWants, c.inner)
}

// hikeCertConf is the gateway with certificates; remote is "any" for the
// responder role or the client's address to initiate at start-up.
func hikeCertConf(c *client, s certSetup, initiate bool) string {
	remote, start := "any", ""
	if initiate {
		remote, start = c.outer.String(), "\n        start_action: start"
	}
	id := ""
	if s.hikeID != "" {
		id = fmt.Sprintf("\n      id: %q", s.hikeID)
	}
	return fmt.Sprintf(`listen:
  addrs: [10.99.0.1]
control_socket: $DIR/control.sock
log:
  level: debug
connections:
  - name: certs
    local:
      auth: pubkey
      cert: $DIR/gw.pem
      key: $DIR/gw.key%s
    remote:
      addrs: %s
      auth: pubkey
      ca: $DIR/ca.pem
      id: %q
    ike:
      proposals: [aes256gcm16-prfsha256-x25519]
    dpd:
      delay: $DPD
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: [%s/32]
        esp:
          proposals: [aes256gcm16]%s
`, id, remote, s.hikeWants, c.inner, start)
}

// rfc7427Schemes are strongSwan's names for the signature schemes of RFC
// 7427 digital signature authentication with the key types under test; the
// pre-RFC 7427 methods log as RSA_EMSA_PKCS1_SHA1 or ECDSA-256.
var rfc7427Schemes = map[string]*regexp.Regexp{
	"rsa":     regexp.MustCompile(`^RSA_EMSA_(PKCS1|PSS)_SHA2_(256|384|512)$`),
	"ecdsa":   regexp.MustCompile(`^ECDSA_WITH_SHA(256|384|512)_DER$`),
	"ed25519": regexp.MustCompile(`^ED25519$`),
}

var hashAlgFromHike = regexp.MustCompile(`parsed IKE_SA_INIT (request|response) 0 \[[^\]]*N\(HASH_ALG\)`)

var authLine = regexp.MustCompile(`authentication of '([^']*)' (?:\(myself\) )?with (\S+) successful`)

// checkCertAuth asserts, from charon's log and SA, that both sides
// authenticated each other with RFC 7427 signatures under the expected
// identities.
func checkCertAuth(t *testing.T, e *env, s certSetup, swanSubject []byte, log string) {
	t.Helper()
	if !hashAlgFromHike.MatchString(log) {
		t.Fatal("hike sent no SIGNATURE_HASH_ALGORITHMS notify in IKE_SA_INIT")
	}
	seen := map[string]string{}
	for _, m := range authLine.FindAllStringSubmatch(log, -1) {
		seen[m[1]] = m[2]
	}
	for _, id := range []string{s.swanID, s.hikeIDSeen()} {
		scheme, ok := seen[id]
		if !ok {
			t.Fatalf("charon logged no successful authentication of %q (saw %v)", id, seen)
		}
		if !rfc7427Schemes[s.kind].MatchString(scheme) {
			t.Fatalf("authentication of %q used %s, not an RFC 7427 %s signature", id, scheme, s.kind)
		}
	}
	t.Logf("charon: %v", seen)
	e.swanSA(e.clients[0].swan, 1, 5*time.Second)
	// swan.SAs reads --raw output, which cannot hold a DN's spaces; the
	// table form quotes identities.
	out, err := e.clients[0].swan.Swanctl("--list-sas")
	must(t, err)
	if !strings.Contains(out, fmt.Sprintf("local  '%s' @", s.swanID)) || !strings.Contains(out, fmt.Sprintf("remote '%s' @", s.hikeIDSeen())) {
		t.Fatalf("strongSwan's IKE SA has other identities than %q (local) and %q (remote):\n%s", s.swanID, s.hikeIDSeen(), out)
	}
	// hike shows a DN identity as its DER in hex ("DN:3031..."); the
	// strongSwan-style text is accepted too.
	want := s.swanID
	if strings.HasPrefix(want, "C=") {
		want = fmt.Sprintf("DN:%x", swanSubject)
	}
	h := e.hikeSA()
	if h["peer_id"] != want && h["peer_id"] != s.swanID {
		t.Fatalf("hike's peer identity %v, want %q (%s)", h["peer_id"], want, s.swanID)
	}
}

// hikeIDSeen is the identity hike sends: the subject DN by default.
func (s certSetup) hikeIDSeen() string {
	if s.hikeID == "" {
		return dn("gw.example")
	}
	return s.hikeID
}

// certCases cover each key type, subject DN and SAN FQDN identities on
// both sides and hike's default identity (its certificate's subject).
func certCases() []certSetup {
	return []certSetup{
		{kind: "rsa", hikeID: "", swanID: dn("client.example"), hikeWants: dn("client.example"), swanWants: dn("gw.example")},
		{kind: "ecdsa", hikeID: "gw.example", swanID: "client.example", hikeWants: "*.example", swanWants: "gw.example"},
		{kind: "ed25519", hikeID: "gw.example", swanID: dn("client.example"), hikeWants: "C=CH, O=hike interop, CN=*", swanWants: "gw.example"},
	}
}

// TestCertStrongSwanInitiator: a strongSwan client authenticates to hike
// with certificates of each key type; traffic flows.
func TestCertStrongSwanInitiator(t *testing.T) {
	for _, s := range certCases() {
		t.Run(s.kind, func(t *testing.T) {
			e := newEnv(t, 1)
			ca := newPKI(t, "hike interop CA")
			s.hikeCAs, s.swanCAs = ca, ca
			subj := e.writeCreds(s, ca, ca, 1)
			e.startHike(hikeCertConf(e.clients[0], s, false))
			d := e.startSwan(1, swanCertConf(e.clients[0], s, ""))
			if err := d.Initiate("net"); err != nil {
				t.Fatal(err)
			}
			checkCertAuth(t, e, s, subj, d.Log())
			e.ping(e.clients[0], gwInner, 3)
		})
	}
}

// TestCertHikeInitiator: hike authenticates to a strongSwan responder with
// certificates of each key type; traffic flows.
func TestCertHikeInitiator(t *testing.T) {
	for _, s := range certCases() {
		t.Run(s.kind, func(t *testing.T) {
			e := newEnv(t, 1)
			ca := newPKI(t, "hike interop CA")
			s.hikeCAs, s.swanCAs = ca, ca
			subj := e.writeCreds(s, ca, ca, 1)
			d := e.startSwan(1, swanCertConf(e.clients[0], s, ""))
			e.startHike(hikeCertConf(e.clients[0], s, true))
			e.swanSA(d, 1, 10*time.Second)
			checkCertAuth(t, e, s, subj, d.Log())
			e.pingFromGW(e.clients[0], 3)
		})
	}
}

// TestCertUnknownCA: a client whose certificate another CA signed is
// refused with AUTHENTICATION_FAILED, and neither side keeps an SA.
func TestCertUnknownCA(t *testing.T) {
	e := newEnv(t, 1)
	trusted, other := newPKI(t, "hike interop CA"), newPKI(t, "another CA")
	s := certSetup{kind: "ecdsa", hikeID: "gw.example", swanID: "client.example", hikeWants: "*.example", swanWants: "gw.example",
		hikeCAs: trusted, swanCAs: trusted}
	e.writeCreds(s, trusted, other, 1)
	e.startHike(hikeCertConf(e.clients[0], s, false))
	d := e.startSwan(1, swanCertConf(e.clients[0], s, ""))
	if err := d.Initiate("net"); err == nil {
		t.Fatal("strongSwan established with a certificate from an untrusted CA")
	}
	if !strings.Contains(d.Log(), "received AUTHENTICATION_FAILED notify error") {
		t.Fatalf("charon did not receive AUTHENTICATION_FAILED")
	}
	if !strings.Contains(e.hike.Out.String(), "peer authentication failed") {
		t.Fatal("hike did not log the failed authentication")
	}
	waitFor(t, 5*time.Second, "both sides to drop the SA", func() bool {
		sas, err := d.SAs()
		return err == nil && len(sas) == 0 && len(e.hikeSAs()) == 0
	})
}
