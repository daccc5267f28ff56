package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/wire"
)

// testCA is a throw-away certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".pem")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// issue writes a node certificate naming cn (and dns, if given) and its
// key; it returns the two file names.
func (ca *testCA) issue(t testing.TB, dir, file, cn string, dns ...string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, file+".pem"), filepath.Join(dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t testing.TB, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testCluster is n nodes on 127.0.0.{11..} in one process, each owning one
// VIP 192.0.2.{11..}.
type testCluster struct {
	t       testing.TB
	dir     string
	ca      *testCA
	keyFile string
	key     []byte
	peers   []config.Peer
	nodes   []*Node
	opts    []Options
}

func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	dir := t.TempDir()
	tc := &testCluster{t: t, dir: dir, ca: newCA(t, dir, "cluster-ca")}
	tc.key = make([]byte, KeySize)
	rand.Read(tc.key)
	tc.keyFile = filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(tc.keyFile, []byte(hex.EncodeToString(tc.key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("node%d", i+1)
		tc.peers = append(tc.peers, config.Peer{
			ID:      id,
			Address: freeAddr(t, fmt.Sprintf("127.0.0.%d", 11+i)),
			VIPs:    []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("192.0.2.%d/24", 11+i))},
		})
	}
	for i := range n {
		id := tc.peers[i].ID
		cert, key := tc.ca.issue(t, dir, id, id, id)
		tc.opts = append(tc.opts, Options{
			Cluster: &config.Cluster{
				NodeID: id, Peers: tc.peers, DataDir: filepath.Join(dir, id),
				KeyFile:          tc.keyFile,
				TLS:              config.TLSFiles{CAFile: tc.ca.file, CertFile: cert, KeyFile: key},
				HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 600 * time.Millisecond,
			},
		})
	}
	tc.nodes = make([]*Node, n)
	return tc
}

// start creates and starts node i with its options.
func (tc *testCluster) start(i int) *Node {
	tc.t.Helper()
	nd, err := New(tc.opts[i])
	if err != nil {
		tc.t.Fatal(err)
	}
	if err := nd.Start(context.Background()); err != nil {
		tc.t.Fatal(err)
	}
	tc.nodes[i] = nd
	tc.t.Cleanup(func() { nd.Close() })
	return nd
}

func (tc *testCluster) startAll() {
	for i := range tc.nodes {
		tc.start(i)
	}
}

// leader waits until the running nodes agree on a leader and returns its
// index.
func (tc *testCluster) leader(among ...int) int {
	tc.t.Helper()
	if among == nil {
		for i, nd := range tc.nodes {
			if nd != nil && !nd.closed {
				among = append(among, i)
			}
		}
	}
	idx := -1
	waitFor(tc.t, 10*time.Second, "agreed leader", func() bool {
		var l string
		for _, i := range among {
			nd := tc.nodes[i]
			got := nd.Leader()
			if got == "" || (l != "" && got != l) {
				return false
			}
			l = got
		}
		for i, p := range tc.peers {
			if p.ID == l && tc.nodes[i] != nil {
				idx = i
				return tc.nodes[i].raft.State().String() == "Leader"
			}
		}
		return false
	})
	return idx
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// marker is a byte pattern put into every key of test records; finding it
// anywhere on disk means key material was written in the clear.
var marker = []byte("\x8e\x11KEYMARK\x5a\xc3\x00\xff\x42key-material\x99")

// testRecord returns a record of realistic size (~1 KiB as JSON, one Child
// SA) whose keys all contain marker.
func testRecord(spi uint64, local netip.Addr) ike.Record {
	key := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		copy(b, marker)
		return b
	}
	ts := []wire.TrafficSelector{{Type: wire.TS_IPV4_ADDR_RANGE, EndPort: 65535,
		Start: netip.MustParseAddr("10.0.100.0"), End: netip.MustParseAddr("10.0.100.255")}}
	return ike.Record{
		Version: 1, Conn: "ha-remote-access", SPIi: spi, SPIr: spi ^ 0xffff_0000_0000_ffff,
		Local: netip.AddrPortFrom(local, 4500), Remote: netip.MustParseAddrPort("198.51.100.7:4500"),
		Encr: 20, EncrBits: 256, PRF: 7, DH: 31,
		Keys:       ike.RecordKeys{D: key(48), Ai: nil, Ar: nil, Ei: key(36), Er: key(36), Pi: key(48), Pr: key(48)},
		PeerIDType: 2, PeerID: []byte("client.example.org"),
		NextSend: 64, NextRecv: 3, PeerWindow: 1, IVMark: 1 << 16,
		Established: time.Now().UTC(), Saved: time.Now().UTC(),
		Children: []ike.ChildRecord{{Name: "corp", ReqID: 7, SPIIn: 0xc0010001, SPIOut: 0xc0020002, Encr: 20, EncrBits: 256,
			LocalTS: ts, RemoteTS: ts, InEncr: key(36), OutEncr: key(36), OutSeq: 12345, Created: time.Now().UTC()}},
	}
}

// recordsEqual compares what matters for a takeover: identity and keys.
func recordsEqual(a, b ike.Record) bool {
	return a.SPIi == b.SPIi && a.SPIr == b.SPIr && a.Local == b.Local &&
		bytes.Equal(a.Keys.D, b.Keys.D) && bytes.Equal(a.Keys.Ei, b.Keys.Ei) && bytes.Equal(a.Keys.Pr, b.Keys.Pr) &&
		len(a.Children) == len(b.Children) && bytes.Equal(a.Children[0].InEncr, b.Children[0].InEncr)
}
