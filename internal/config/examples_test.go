package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The example configurations reference a throw-away PKI committed under
// examples/pki. It is generated here, never fetched:
//
//	go test ./internal/config -run TestExamplePKI -regen-example-pki
var regenPKI = flag.Bool("regen-example-pki", false, "rewrite examples/pki with fresh example certificates and keys")

const examplesDir = "../../examples"

func TestExamplePKI(t *testing.T) {
	dir := filepath.Join(examplesDir, "pki")
	if *regenPKI {
		if err := writeExamplePKI(dir); err != nil {
			t.Fatal(err)
		}
	}
	cas, err := readCerts(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cas[0])
	for _, name := range []string{"gw", "node1", "node2", "node3", "client"} {
		certs, err := readCerts(filepath.Join(dir, name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s.pem does not chain to ca.pem: %v", name, err)
		}
		key, err := readKey(filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if !keyMatches(certs[0], key) {
			t.Errorf("%s.key does not match %s.pem", name, name)
		}
	}
	state, err := readStateKey(filepath.Join(dir, "state.key"))
	if err != nil {
		t.Fatal(err)
	}
	clusterKey, err := readStateKey(filepath.Join(dir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	if string(state.Bytes()) == string(clusterKey.Bytes()) {
		t.Error("state.key and cluster.key are the same key")
	}
}

// writeExamplePKI creates a CA, a gateway certificate, three cluster node
// certificates and a client certificate, all ECDSA P-256 and all marked
// as examples in their subject, and the state and cluster keys.
func writeExamplePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	org := []string{"hike EXAMPLE ONLY - DO NOT USE"}
	notBefore := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := time.Date(2046, 1, 1, 0, 0, 0, 0, time.UTC)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Country: []string{"CH"}, Organization: org, CommonName: "hike example CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	leaves := []struct {
		name, cn string
		dns      []string
		ips      []net.IP
		eku      []x509.ExtKeyUsage
	}{
		{"gw", "vpn.example.com", []string{"vpn.example.com"}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"client", "alice@example.com", nil, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{"node1", "node1", []string{"node1"}, []net.IP{net.ParseIP("10.0.0.1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{"node2", "node2", []string{"node2"}, []net.IP{net.ParseIP("10.0.0.2")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{"node3", "node3", []string{"node3"}, []net.IP{net.ParseIP("10.0.0.3")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	}
	for i, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{Country: []string{"CH"}, Organization: org, CommonName: l.cn},
			NotBefore:    notBefore,
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  l.eku,
			DNSNames:     l.dns,
			IPAddresses:  l.ips,
		}
		if l.name == "client" {
			tmpl.EmailAddresses = []string{l.cn}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		pk, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, l.name+".pem"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, l.name+".key"), "PRIVATE KEY", pk); err != nil {
			return err
		}
	}
	// The state key and the cluster key have the same form (32 bytes as
	// hex) but must not be the same key.
	for _, name := range []string{"state.key", "cluster.key"} {
		key := make([]byte, StateKeySize)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// TestExamplesLoad keeps examples/ honest: every file there must load.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	summaries := map[string]string{
		"ra-psk.yaml":        "1 connection (road-warriors), 2 pools, data plane auto",
		"ra-cert.yaml":       "1 connection (employees), 1 pool, data plane userspace, persistent state",
		"site-to-site.yaml":  "1 connection (branch), 0 pools, data plane auto",
		"cluster-node1.yaml": "1 connection (ha-remote-access), 1 pool, data plane auto, persistent state, cluster node node1 of 3",
	}
	found := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		found[name] = true
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatalf("example does not load:\n%v", err)
			}
			if want, ok := summaries[name]; ok && cfg.Summary() != want {
				t.Errorf("summary %q, want %q", cfg.Summary(), want)
			}
		})
	}
	for name := range summaries {
		if !found[name] {
			t.Errorf("examples/%s is missing", name)
		}
	}
}
