package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The failover scenario's addressing. Every node, every group of simulated
// clients and every strongSwan client hangs off one bridge in a namespace
// of its own (the "switch"): one L2 segment, so that a VIP moves between
// nodes by gratuitous ARP alone, as it would between real machines.
//
//	node i          10.99.0.(10+i)/16 on eth0, raft on port 7946
//	  its VIP       10.99.1.i/16, added to eth0 by hike serve
//	  its pool      10.(110+i).0.0/16, virtual IPs of simulated clients
//	load group i    10.99.0.(200+i)/16 on eth0, client sources 10.(200+i).0.0/16 on lo
//	strongSwan j    10.99.100.(1+j)/16 on eth0, inner 10.98.0.j on lo
//
// The nodes route each group's sources to it; the protected network
// 10.97.0.1 sits on every node's loopback, so a strongSwan client's pings
// reach whichever node holds its SA.
const (
	minVoters = 3
	maxVoters = 7 // the cluster's own bounds (config.MaxClusterVoters)
	raftPort  = 7946
	clusterIf = "eth0"
	// maxSimulated keeps every group's clients inside its /16 of sources
	// and every node's virtual IPs inside its pool.
	maxSimulated = 60000
)

// swanHAProposal is the IKE proposal of strongSwan clients of a cluster:
// not AES-GCM. charon derives AES-GCM IVs from message IDs and refuses one
// it cannot make unique (iv_gen_seq), which the response to an RFC 6311
// sync request, always message ID 0, is once charon has answered an
// earlier request 0 and sent a request of its own (strongSwan 5.9.8 logs
// "encrypting encrypted payload failed, no IV or padding" and the IKE SA
// dies). With CBC the IVs are random.
const swanHAProposal = "aes256-sha256-x25519"

func nodeID(i int) string { return fmt.Sprintf("node%d", i) }

// The witness (Options.Witness) votes from its own namespace on the
// bridge; it owns no VIP and serves no IKE.
const witnessID = "witness"

var witnessAddr = netip.MustParseAddr("10.99.0.9")

// memberIDs lists the cluster's voters: the nodes and, with a witness, it.
func memberIDs(nodes int, witness bool) []string {
	ids := make([]string, 0, nodes+1)
	for i := 1; i <= nodes; i++ {
		ids = append(ids, nodeID(i))
	}
	if witness {
		ids = append(ids, witnessID)
	}
	return ids
}

func nodeAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}) }

func nodeVIP(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 1, byte(i)}), outerBits)
}

func nodePool(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(110 + i), 0, 0}), 16)
}

func loadAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, 0, byte(200 + i)}) }

func loadSources(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + i), 0, 0}), 16)
}

// loadDomain names the simulated clients of group i: each group has its
// own, so that identities stay unique across the groups' processes.
func loadDomain(i int) string { return fmt.Sprintf("l%d.load.%s", i, domain) }

// spread splits n clients over k groups as evenly as possible, the first
// groups taking the remainder.
func spread(n, k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// pki is the cluster's throw-away PKI and keys for one run, written into
// the run's directory with private material 0600. Nothing of it outlives
// the lab.
type pki struct {
	CA         string            // CA certificate
	Certs      map[string]string // node ID -> certificate
	Keys       map[string]string // node ID -> private key
	ClusterKey string            // 64 hex digits
	PSK        string            // the IKE pre-shared key: 64 hex digits, taken as text
}

// newPKI makes a cluster CA, one certificate per member naming its ID
// (common name and DNS SAN, usable as TLS server and client: members dial
// each other both ways), a cluster key and the IKE PSK.
func newPKI(dir string, ids []string) (*pki, error) {
	p := &pki{CA: filepath.Join(dir, "ca.pem"), Certs: map[string]string{}, Keys: map[string]string{},
		ClusterKey: filepath.Join(dir, "cluster.key"), PSK: filepath.Join(dir, "lab.psk")}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"hike lab"}, CommonName: "hike lab cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	if err := writePEM(p.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return nil, err
	}
	for _, id := range ids {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{Organization: []string{"hike lab"}, CommonName: id},
			DNSNames:     []string{id},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(7 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		p.Certs[id] = filepath.Join(dir, id+".pem")
		p.Keys[id] = filepath.Join(dir, id+".key")
		if err := writePEM(p.Certs[id], "CERTIFICATE", der, 0o644); err != nil {
			return nil, err
		}
		if err := writePEM(p.Keys[id], "PRIVATE KEY", kder, 0o600); err != nil {
			return nil, err
		}
	}
	if err := writeRandomHex(p.ClusterKey); err != nil {
		return nil, err
	}
	// `hike load` takes a key file's text as the key, where hike serve
	// and strongSwan would decode a 0x prefix: a key written as plain hex
	// digits is the same 64 characters to all three.
	if err := writeRandomHex(p.PSK); err != nil {
		return nil, err
	}
	return p, nil
}

// writeRandomHex writes 32 random octets as 64 hex digits, readable by
// the owner only.
func writeRandomHex(path string) error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return err
	}
	defer clear(k[:])
	return os.WriteFile(path, []byte(hex.EncodeToString(k[:])+"\n"), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// nodeSocket is node i's control socket.
func nodeSocket(dir string, i int) string { return filepath.Join(dir, nodeID(i)+".sock") }

// nodeConfig is node i's configuration for a cluster of n: the same
// connections on every node (same identity, same PSK, so that any node can
// carry any SA), a pool of its own for the simulated clients' virtual IPs
// (a survivor keeps the addresses it restores without handing them out
// again), and the cluster section. Detection is the cluster's default
// (about a second); DPD is dpd both ways.
func nodeConfig(dir string, p *pki, i, n int, witness bool, dpd time.Duration, swan bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Generated by hike lab for one run; removed with the lab.
listen:
  addrs: [0.0.0.0]
control_socket: %s
log:
  level: info
dataplane:
  kind: userspace
secrets:
  lab:
    psk_file: %s
pools:
  load: %s
connections:
%s`, nodeSocket(dir, i), p.PSK, nodePool(i), pskConn("load", "load."+domain, "load", ikeProposal, dpd, "dynamic"))
	if swan {
		b.WriteString(pskConn("swan", "swan."+domain, "", swanHAProposal, dpd, "["+clientsNet.String()+"]"))
	}
	id := nodeID(i)
	fmt.Fprintf(&b, `cluster:
  node_id: %s
  data_dir: %s
  key_file: %s
  interface: %s
`, id, filepath.Join(dir, id, "raft"), p.ClusterKey, clusterIf)
	writeMembership(&b, p, id, n, witness)
	return b.String()
}

// witnessConfig is the witness's configuration: the cluster section alone,
// without the cluster key (it never sees an SA record in the clear).
func witnessConfig(dir string, p *pki, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Generated by hike lab for one run; removed with the lab.
control_socket: %s
log:
  level: info
cluster:
  node_id: %s
  data_dir: %s
`, witnessSocket(dir), witnessID, filepath.Join(dir, witnessID, "raft"))
	writeMembership(&b, p, witnessID, n, true)
	return b.String()
}

// writeMembership writes the TLS material of member id and the peers, the
// same on every member.
func writeMembership(b *strings.Builder, p *pki, id string, n int, witness bool) {
	fmt.Fprintf(b, "  tls:\n    ca: %s\n    cert: %s\n    key: %s\n  peers:\n", p.CA, p.Certs[id], p.Keys[id])
	for j := 1; j <= n; j++ {
		fmt.Fprintf(b, "    - id: %s\n      address: %s\n      vips: [%s]\n",
			nodeID(j), netip.AddrPortFrom(nodeAddr(j), raftPort), nodeVIP(j))
	}
	if witness {
		fmt.Fprintf(b, "    - id: %s\n      address: %s\n      witness: true\n", witnessID, netip.AddrPortFrom(witnessAddr, raftPort))
	}
}

// witnessSocket is the witness's control socket.
func witnessSocket(dir string) string { return filepath.Join(dir, witnessID+".sock") }
