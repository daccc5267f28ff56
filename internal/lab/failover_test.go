package lab

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/wire"
)

// TestNodeConfigsLoad: every node's generated configuration, with the
// generated PKI, is one `hike serve` accepts, and together they describe
// one cluster: the same peers, a distinct node ID, certificate and pool
// each, the same key files.
func TestNodeConfigsLoad(t *testing.T) {
	for _, tc := range []struct {
		n       int
		witness bool
	}{{3, false}, {5, false}, {2, true}} {
		n := tc.n
		for _, swan := range []bool{false, true} {
			dir := t.TempDir()
			p, err := newPKI(dir, memberIDs(n, tc.witness))
			if err != nil {
				t.Fatal(err)
			}
			pools := map[netip.Prefix]string{}
			for i := 1; i <= n; i++ {
				text := nodeConfig(dir, p, i, n, tc.witness, 2*time.Second, swan)
				path := filepath.Join(dir, nodeID(i)+".yaml")
				if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg, err := config.Load(path)
				if err != nil {
					t.Fatalf("hike rejects node %d's configuration: %v\n%s", i, err, text)
				}
				cl := cfg.Cluster
				voters := n
				if tc.witness {
					voters++
				}
				if cl == nil || cl.NodeID != nodeID(i) || len(cl.Peers) != voters || cl.Interface != clusterIf {
					t.Fatalf("node %d: cluster section %+v", i, cl)
				}
				if cl.KeyFile != p.ClusterKey || cl.TLS.CertFile != p.Certs[nodeID(i)] || cl.TLS.CAFile != p.CA {
					t.Errorf("node %d: key %s, cert %s, CA %s", i, cl.KeyFile, cl.TLS.CertFile, cl.TLS.CAFile)
				}
				for j, peer := range cl.Peers[:n] {
					if peer.ID != nodeID(j+1) || peer.Address != netip.AddrPortFrom(nodeAddr(j+1), raftPort).String() ||
						len(peer.VIPs) != 1 || peer.VIPs[0] != nodeVIP(j+1) || peer.Witness {
						t.Errorf("node %d: peer %d is %+v", i, j+1, peer)
					}
				}
				if cfg.Dataplane.Kind != config.DataplaneUserspace {
					t.Errorf("node %d: data plane %q, want userspace", i, cfg.Dataplane.Kind)
				}
				load := cfg.Connection("load")
				if load == nil || load.DPD.Delay != 2*time.Second || len(load.Pools) != 1 {
					t.Fatalf("node %d: load connection %+v", i, load)
				}
				if got := load.Pools[0].Ranges; len(got) != 1 || !nodePool(i).Contains(got[0].From) || !nodePool(i).Contains(got[0].To) {
					t.Errorf("node %d: pool %v, want within %v", i, got, nodePool(i))
				}
				if prev, dup := pools[nodePool(i)]; dup {
					t.Errorf("nodes %s and %d share a pool", prev, i)
				}
				pools[nodePool(i)] = nodeID(i)
				for g := 1; g <= n; g++ {
					id := "c7." + loadDomain(g)
					if !load.Remote.ID.Matches(wire.ID_FQDN, []byte(id)) {
						t.Errorf("node %d does not take simulated client %q", i, id)
					}
				}
				if tc.witness {
					if w := cl.Peers[n]; w.ID != witnessID || !w.Witness || len(w.VIPs) != 0 ||
						w.Address != netip.AddrPortFrom(witnessAddr, raftPort).String() {
						t.Errorf("node %d: witness peer %+v", i, w)
					}
				}
				swanConn := cfg.Connection("swan")
				if (swanConn != nil) != swan {
					t.Fatalf("node %d: swan connection %v, want %v", i, swanConn != nil, swan)
				}
				if swan {
					id := "c3.swan." + domain
					if !swanConn.Remote.ID.Matches(wire.ID_FQDN, []byte(id)) || load.Remote.ID.Matches(wire.ID_FQDN, []byte(id)) {
						t.Errorf("node %d: strongSwan client %q does not select the swan connection alone", i, id)
					}
					// strongSwan cannot answer an RFC 6311 sync under
					// AES-GCM (see swanHAProposal): both sides must agree
					// on one without it.
					props := swanConn.IKE.Proposals
					sc := swanConfig(3, nodeVIP(i).Addr(), id, swanHAProposal, "x", 2*time.Second)
					if len(props) != 1 || props[0].AEAD() || submatch(t, swanProposals, sc) != swanHAProposal {
						t.Errorf("node %d: swan proposals %v, client's %s: want one, without AEAD, on both sides",
							i, props, submatch(t, swanProposals, sc))
					}
				}
			}
		}
	}
}

var swanProposals = regexp.MustCompile(`\n\s*proposals = (\S+)`)

// TestWitnessConfigLoads: the witness's configuration is one `hike
// witness` accepts: a witness member of the same cluster, without the
// cluster key or any connection.
func TestWitnessConfigLoads(t *testing.T) {
	dir := t.TempDir()
	p, err := newPKI(dir, memberIDs(2, true))
	if err != nil {
		t.Fatal(err)
	}
	text := witnessConfig(dir, p, 2)
	path := filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("hike rejects the witness's configuration: %v\n%s", err, text)
	}
	cl := cfg.Cluster
	if cl == nil || cl.NodeID != witnessID || cl.Self() == nil || !cl.Self().Witness || cl.KeyFile != "" || len(cl.Peers) != 3 {
		t.Fatalf("cluster section %+v", cl)
	}
	if len(cfg.Connections) != 0 || cfg.ControlSocket != witnessSocket(dir) || cl.TLS.CertFile != p.Certs[witnessID] {
		t.Errorf("witness: %d connections, socket %s, cert %s", len(cfg.Connections), cfg.ControlSocket, cl.TLS.CertFile)
	}
	for j, peer := range cl.Peers[:2] {
		if peer.ID != nodeID(j+1) || len(peer.VIPs) != 1 || peer.VIPs[0] != nodeVIP(j+1) {
			t.Errorf("peer %d: %+v", j+1, peer)
		}
	}
}

// TestPKI: each node's certificate names its node ID, chains to the CA and
// serves both ends of a TLS connection; private material is 0600; the
// cluster key and the PSK have the forms their readers take.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := newPKI(dir, memberIDs(3, true))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Certs) != 4 || p.Certs[witnessID] == "" {
		t.Fatalf("certificates %v: want node1 to node3 and the witness", p.Certs)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.CA))
	for _, id := range memberIDs(3, true) {
		c := readCert(t, p.Certs[id])
		if c.Subject.CommonName != id || len(c.DNSNames) != 1 || c.DNSNames[0] != id {
			t.Errorf("%s: certificate names %q %v", id, c.Subject.CommonName, c.DNSNames)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s: does not verify for usage %v: %v", id, usage, err)
			}
		}
		assertMode(t, p.Keys[id], 0o600)
	}
	assertMode(t, p.ClusterKey, 0o600)
	assertMode(t, p.PSK, 0o600)
	key, _ := os.ReadFile(p.ClusterKey)
	if b, err := hex.DecodeString(strings.TrimSpace(string(key))); err != nil || len(b) != 32 {
		t.Errorf("cluster key is not 64 hex digits: %v, %d bytes", err, len(b))
	}
	psk, _ := os.ReadFile(p.PSK)
	if s := strings.TrimSpace(string(psk)); len(s) != 64 || strings.HasPrefix(s, "0x") {
		t.Errorf("PSK %d characters: want 64 hex digits without 0x, the same text to hike serve and hike load", len(s))
	}
	q, err := newPKI(t.TempDir(), memberIDs(3, false))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := os.ReadFile(q.PSK)
	if string(other) == string(psk) {
		t.Error("two runs share a PSK")
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

// TestClusterAddressing: every address the failover scenario hands out is
// distinct; nodes, VIPs, groups and strongSwan clients share the bridge's
// subnet; the groups' sources, the pools and the strongSwan inner
// addresses lie outside it and outside each other.
func TestClusterAddressing(t *testing.T) {
	bridge := netip.PrefixFrom(nodeAddr(1), outerBits).Masked()
	seen := map[netip.Addr]string{}
	use := func(a netip.Addr, what string) {
		if prev, dup := seen[a]; dup {
			t.Errorf("%v is %s and %s", a, prev, what)
		}
		seen[a] = what
		if !bridge.Contains(a) {
			t.Errorf("%s %v is not on the bridge %v", what, a, bridge)
		}
	}
	var outside []netip.Prefix
	for i := 1; i <= maxVoters; i++ {
		use(nodeAddr(i), nodeID(i))
		use(nodeVIP(i).Addr(), nodeID(i)+"'s VIP")
		use(loadAddr(i), "group "+nodeID(i))
		if nodeVIP(i).Bits() != outerBits {
			t.Errorf("VIP %v: want the bridge's prefix length", nodeVIP(i))
		}
		outside = append(outside, nodePool(i), loadSources(i))
	}
	for j := 1; j <= maxClients; j++ {
		outer, _ := clientAddrs(j)
		use(outer, "strongSwan client")
	}
	outside = append(outside, clientsNet, protectedNet)
	for i, p := range outside {
		if p.Overlaps(bridge) {
			t.Errorf("%v overlaps the bridge", p)
		}
		for _, q := range outside[i+1:] {
			if p.Overlaps(q) {
				t.Errorf("%v overlaps %v", p, q)
			}
		}
	}
	// Each group's sources and each node's pool hold the most clients
	// the lab runs.
	for i := 1; i <= maxVoters; i++ {
		for _, p := range []netip.Prefix{nodePool(i), loadSources(i)} {
			if size := 1 << (32 - p.Bits()); size-2 < maxSimulated/2+1 {
				t.Errorf("%v holds %d addresses, fewer than %d clients", p, size-2, maxSimulated/2+1)
			}
		}
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		n, k int
		want []int
	}{
		{300, 3, []int{100, 100, 100}},
		{10, 3, []int{4, 3, 3}},
		{2, 3, []int{1, 1, 0}},
		{0, 3, []int{0, 0, 0}},
		{7, 7, []int{1, 1, 1, 1, 1, 1, 1}},
	} {
		got := spread(tc.n, tc.k)
		if len(got) != len(tc.want) {
			t.Fatalf("spread(%d, %d) = %v", tc.n, tc.k, got)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("spread(%d, %d) = %v, want %v", tc.n, tc.k, got, tc.want)
				break
			}
		}
	}
}

func TestPickVictim(t *testing.T) {
	ids := []string{"node1", "node2", "node3"}
	even := map[string]int{"node1": 100, "node2": 100, "node3": 100}
	for _, tc := range []struct {
		sas    map[string]int
		leader string
		how    string
		want   string
	}{
		{even, "node2", "", "node1"},
		{even, "node2", KillBusiest, "node1"},
		{map[string]int{"node1": 99, "node2": 101, "node3": 100}, "node1", "", "node2"},
		{map[string]int{"node1": 1, "node2": 2, "node3": 3}, "", "", "node3"},
		{map[string]int{"node2": 5, "node3": 5}, "node1", "", "node2"},
		{nil, "", "", "node1"},
		{even, "node2", KillLeader, "node2"},
		{even, "", KillLeader, "node1"}, // no leader known: the busiest
		{even, "node1", KillFollower, "node2"},
		{map[string]int{"node1": 1, "node2": 2, "node3": 3}, "node3", KillFollower, "node2"},
		{even, "node1", "node3", "node3"},
		{even, "node1", "node9", "node1"}, // not a member: the busiest
	} {
		if got := pickVictim(ids, tc.sas, tc.leader, tc.how); got != tc.want {
			t.Errorf("pickVictim(%v, leader %q, %q) = %s, want %s", tc.sas, tc.leader, tc.how, got, tc.want)
		}
	}
}

// TestTakenOver: SAs are matched by both SPIs, whatever their case; an SA
// counts as resynchronised once the peer answered its sync.
func TestTakenOver(t *testing.T) {
	sa := func(i, r, peer string, sync bool, after [2]uint32) ike.SAInfo {
		return ike.SAInfo{SPIi: i, SPIr: r, PeerID: peer, Extensions: ike.Extensions{MIDSync: sync},
			Stats: ike.SAStats{LastSyncAfter: after}}
	}
	victim := []ike.SAInfo{
		sa("00000000000000a1", "00000000000000b1", "c1.example", true, [2]uint32{}),
		sa("00000000000000a2", "00000000000000b2", "c2.example", true, [2]uint32{}),
		sa("00000000000000a3", "00000000000000b3", "c3.example", true, [2]uint32{}),
		sa("00000000000000a4", "00000000000000b4", "", true, [2]uint32{}),
		sa("00000000000000a5", "00000000000000b5", "c5.example", false, [2]uint32{}),
	}
	owner := []ike.SAInfo{
		sa("00000000000000A1", "00000000000000B1", "c1.example", true, [2]uint32{5, 3}), // restored, synced
		sa("00000000000000a2", "00000000000000b2", "c2.example", true, [2]uint32{}),     // restored, sync pending
		sa("00000000000000a3", "00000000000000ff", "c3.example", true, [2]uint32{1, 1}), // another SA: responder SPI differs
		sa("00000000000000a5", "00000000000000b5", "c5.example", false, [2]uint32{}),    // restored, no RFC 6311: nothing to sync
		sa("00000000000000c1", "00000000000000d1", "own.example", true, [2]uint32{2, 2}),
	}
	got := takenOver(victim, owner)
	want := progress{restored: 3, resynced: 1, behind: []string{"00000000000000a4/00000000000000b4", "c2.example", "c3.example"}}
	if got.restored != want.restored || got.resynced != want.resynced || !slices.Equal(got.behind, want.behind) {
		t.Errorf("takenOver = %+v, want %+v", got, want)
	}
	if got := takenOver(victim, nil); got.restored != 0 || got.resynced != 0 || len(got.behind) != 5 {
		t.Errorf("takenOver with nothing listed = %+v", got)
	}
}

// statusJSON is a status in the shape `hike cluster status --json` prints
// (typed here by hand).
const statusJSON = `{"node":"node2","leader":"node2","serving":true,"witness":false,"term":3,"applied_index":812,
"members":[{"id":"node1","address":"10.99.0.11:7946","witness":false,"leader":false,"reachable":false,"last_contact_ms":1450},
{"id":"node2","address":"10.99.0.12:7946","witness":false,"leader":true,"reachable":true,"last_contact_ms":0},
{"id":"node3","address":"10.99.0.13:7946","witness":false,"leader":false,"reachable":true,"last_contact_ms":40}],
"vips":[{"vip":"10.99.1.1","owner":"node3","home":"node1"},{"vip":"10.99.1.2","owner":"node2","home":"node2"},
{"vip":"10.99.1.3","owner":"","home":"node3"}],
"sas":{"node2":100,"node3":200},
"replication":{"entries":40,"sa_puts":330,"sa_deletes":2,"vip_moves":1,"entry_bytes":52000,"tx_bytes":901234,"rx_bytes":45678},
"unknown_field":[1,2]}`

// TestParseStatus reads statusJSON.
func TestParseStatus(t *testing.T) {
	st, err := parseStatus([]byte(statusJSON))
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "node2" || st.Leader != "node2" || !st.Serving || st.Term != 3 {
		t.Errorf("status %+v", st)
	}
	for vip, want := range map[string]string{"10.99.1.1": "node3", "10.99.1.2": "node2", "10.99.1.3": "", "10.99.1.4": ""} {
		if got := st.owner(netip.MustParseAddr(vip)); got != want {
			t.Errorf("owner(%s) = %q, want %q", vip, got, want)
		}
	}
	if m := st.member("node1"); m == nil || m.Reachable || m.Leader {
		t.Errorf("member node1 = %+v, want unreachable follower", m)
	}
	if m := st.member("node4"); m != nil {
		t.Errorf("member node4 = %+v, want none", m)
	}
	if st.SAs["node3"] != 200 || st.Replication.Entries != 40 || st.Replication.SAPuts != 330 || st.Replication.TxBytes != 901234 ||
		st.Replication.SADeletes != 2 || st.Replication.VIPMoves != 1 {
		t.Errorf("counts %v %+v", st.SAs, st.Replication)
	}
	for _, bad := range []string{"", "{", `{"sas":{"node1":"x"}}`, "null["} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q): no error", bad)
		}
	}
}

// loadOutput is what `hike load --json` may print: a log line, then its
// summary (typed here by hand, abridged).
var loadOutput = `time=2026-11-27T18:00:00Z level=WARN msg="something {odd}"
{ not json
{
  "target": "10.99.1.1:500",
  "clients": 100,
  "established": 100,
  "failed": 0,
  "pending": 0,
  "failures_by_reason": {},
  "established_at_end": 99,
  "dpd": {
    "sent": 310,
    "completed": 305,
    "timeouts": 1
  },
  "resyncs_seen": 100,
  "retransmits": 7
}
`

// TestParseLoadSummary finds the summary after whatever `hike load` wrote
// before it, nested objects included.
func TestParseLoadSummary(t *testing.T) {
	s, err := parseLoadSummary(loadOutput)
	if err != nil {
		t.Fatal(err)
	}
	if s.Clients != 100 || s.Established != 100 || s.UpAtEnd != 99 || s.DPD.Sent != 310 || s.DPD.Timeouts != 1 ||
		s.ResyncsSeen != 100 || s.Retransmits != 7 {
		t.Errorf("summary %+v", s)
	}
	for _, bad := range []string{"", "hike: --target: required\n", "{\n  \"clients\": \n"} {
		if _, err := parseLoadSummary(bad); err == nil {
			t.Errorf("parseLoadSummary(%q): no error", bad)
		}
	}
}

func TestLongestGap(t *testing.T) {
	reply := func(seq int) string {
		return "64 bytes from 10.97.0.1: icmp_seq=" + strconv.Itoa(seq) + " ttl=64 time=0.512 ms\n"
	}
	var lossy strings.Builder
	lossy.WriteString("PING 10.97.0.1 (10.97.0.1) from 10.98.0.1 : 56(84) bytes of data.\n")
	for seq := 1; seq <= 40; seq++ {
		if seq <= 10 || seq >= 26 { // 11..25 lost: 15 requests
			lossy.WriteString(reply(seq))
		}
	}
	lossy.WriteString("\n--- 10.97.0.1 ping statistics ---\n40 packets transmitted, 25 received, 37.5% packet loss, time 3900ms\n")
	var tail strings.Builder
	for seq := 1; seq <= 5; seq++ {
		tail.WriteString(reply(seq))
	}
	tail.WriteString(reply(5)[:len(reply(5))-1] + " (DUP!)\n")
	tail.WriteString("12 packets transmitted, 5 received, +1 duplicates, 58.3333% packet loss\n")
	for _, tc := range []struct {
		name string
		out  string
		want int64
	}{
		{"gap in the middle", lossy.String(), 1500},
		{"none lost", reply(1) + reply(2) + reply(3) + "3 packets transmitted, 3 received, 0% packet loss\n", 0},
		{"lost at the end", tail.String(), 700},
		{"lost at the start", reply(4) + reply(5) + "5 packets transmitted, 2 received\n", 300},
		{"nothing answered", "10 packets transmitted, 0 received, 100% packet loss\n", 1000},
		{"no output", "", 0},
	} {
		if got := longestGap(tc.out, 100*time.Millisecond); got != tc.want {
			t.Errorf("%s: longestGap = %d ms, want %d", tc.name, got, tc.want)
		}
	}
}

// goodFailover is the report of a failover in which everything went as
// the cluster promises: 3 nodes, 300 simulated clients, node1 killed.
func goodFailover() *Report {
	return &Report{Scenario: "failover", OK: true, Summary: "failover: test",
		Failover: &Failover{
			Nodes: []Node{{ID: "node1", Namespace: "hkl1n1", Address: "10.99.0.11:7946", VIP: "10.99.1.1"},
				{ID: "node2", Namespace: "hkl1n2", Address: "10.99.0.12:7946", VIP: "10.99.1.2"},
				{ID: "node3", Namespace: "hkl1n3", Address: "10.99.0.13:7946", VIP: "10.99.1.3"}},
			LeaderBefore: "node1",
			SAsBefore:    map[string]int{"node1": 100, "node2": 100, "node3": 100},
			Steady:       Steady{PeriodMS: 4000, NodeDPDSent: 290, NodeDPDAnswered: 290, Entries: 0, TxBytes: 3000},
			Killed:       "node1", KilledVIP: "10.99.1.1", KilledWasLeader: true, KilledSAs: 100, KilledSAsRFC6311: 100,
			DetectedMS: 0, NewLeaderMS: 1210, LeaderAfter: "node2", NewOwner: "node3", TakeoverMS: 1480,
			Restored: 100, Resynced: 100, RestoredMS: 1500, FirstResyncMS: 1520, LastResyncMS: 1710,
			SAsAfter:        map[string]int{"node2": 100, "node3": 200},
			ClusterSAsAfter: map[string]int{"node2": 100, "node3": 200},
			Replicated:      Replicated{Entries: 4, SAPuts: 100, VIPMoves: 1},
			NotServing:      map[string]Gap{"node3": {FromMS: 480, ToMS: 1300}, "node2": {FromMS: 500, ToMS: 1200}},
			Clients: []LoadClients{
				{Group: "l1", VIP: "10.99.1.1", Node: "node1", Clients: 100, Established: 100, UpAtEnd: 100, DPDSent: 400, DPDCompleted: 400, ResyncsSeen: 100, Retransmits: 60},
				{Group: "l2", VIP: "10.99.1.2", Node: "node2", Clients: 100, Established: 100, UpAtEnd: 100, DPDSent: 400, DPDCompleted: 400},
				{Group: "l3", VIP: "10.99.1.3", Node: "node3", Clients: 100, Established: 100, UpAtEnd: 100, DPDSent: 400, DPDCompleted: 400},
			},
		}}
}

// TestJudgeFailover: a failover that kept its promises has no problem;
// each broken promise is named.
func TestJudgeFailover(t *testing.T) {
	o := Options{Clients: 300}
	r := goodFailover()
	judgeFailover(r, o)
	if len(r.Failover.Problems) != 0 {
		t.Fatalf("problems in a good failover: %v", r.Failover.Problems)
	}
	for _, tc := range []struct {
		name   string
		break_ func(r *Report)
		want   string
	}{
		{"VIP not moved", func(r *Report) { r.Failover.NewOwner = "" }, "no survivor took node1's VIP 10.99.1.1 over"},
		{"SA not restored", func(r *Report) { r.Failover.Restored = 98 }, "node3 lists 98 of the 100 SAs node1 served"},
		{"resync missing", func(r *Report) { r.Failover.Resynced = 97 }, "97 of 100 RFC 6311 SAs resynchronised"},
		{"resync missing, named", func(r *Report) {
			r.Failover.Resynced, r.Failover.Behind = 99, []string{"c7.l1.load.hike-lab.example"}
		}, "99 of 100 RFC 6311 SAs resynchronised; behind: c7.l1.load.hike-lab.example"},
		{"resync missing, many", func(r *Report) {
			r.Failover.Resynced, r.Failover.Behind = 93, []string{"a", "b", "c", "d", "e", "f", "g"}
		}, "93 of 100 RFC 6311 SAs resynchronised; behind: a, b, c, d, e and 2 more"},
		{"SAs lost on the cluster", func(r *Report) { r.Failover.SAsAfter["node3"] = 199 }, "the survivors serve 299 IKE SAs, the cluster served 300 before the kill"},
		{"records left to the dead", func(r *Report) { r.Failover.ClusterSAsAfter["node1"] = 3 }, "the cluster still records 3 SAs as node1's"},
		{"client SA down", func(r *Report) { r.Failover.Clients[0].UpAtEnd = 95 }, "simulated clients lost 5 IKE SAs"},
		{"DPD timeout", func(r *Report) { r.Failover.Clients[0].DPDTimeouts = 2 }, "simulated clients saw 2 DPD timeouts"},
		{"setup failed", func(r *Report) {
			r.Failover.Clients[1].Established, r.Failover.Clients[1].UpAtEnd, r.Failover.Clients[1].Failed = 99, 99, 1
		}, "299 of 300 simulated clients established"},
		{"no resyncs seen", func(r *Report) { r.Failover.Clients[0].ResyncsSeen = 0 }, "simulated clients answered 0 resyncs, 100 of them were on node1"},
		{"no summaries", func(r *Report) { r.Failover.Clients = nil }, "no summary from the simulated clients"},
		{"strongSwan SA gone", func(r *Report) {
			r.Clients = []Client{{Name: "s1", Ping: Ping{Sent: 100, Received: 30, LongestGapMS: 7000}}}
		}, "strongSwan s1: no IKE SA at the end"},
		{"strongSwan SA not up", func(r *Report) {
			r.Clients = []Client{{Name: "s1", IKE: IKESA{State: "CONNECTING"}, Ping: Ping{Sent: 100, Received: 30}}}
		}, "strongSwan s1: IKE SA state CONNECTING"},
		{"strongSwan SA replaced", func(r *Report) {
			r.Clients = []Client{{Name: "s1", IKE: IKESA{State: "ESTABLISHED"}, DPD: DPD{FromGateway: 2}, Ping: Ping{Sent: 100, Received: 90, LongestGapMS: 1000}}}
		}, "strongSwan s1: the IKE SA changed"},
		{"strongSwan DPD stopped", func(r *Report) {
			r.Clients = []Client{{Name: "s1", IKE: IKESA{State: "ESTABLISHED"}, DPD: DPD{SameIKESA: true}, Ping: Ping{Sent: 100, Received: 90, LongestGapMS: 1000}}}
		}, "strongSwan s1: no DPD exchange after the kill"},
		{"strongSwan traffic stopped", func(r *Report) {
			r.Clients = []Client{{Name: "s1", IKE: IKESA{State: "ESTABLISHED"}, DPD: DPD{SameIKESA: true, FromClient: 1}, Ping: Ping{Sent: 100, Received: 60, LongestGapMS: 3100}}}
		}, "strongSwan s1: traffic stopped for 3.1s"},
	} {
		r := goodFailover()
		tc.break_(r)
		judgeFailover(r, o)
		if !contains(r.Failover.Problems, tc.want) {
			t.Errorf("%s: problems %q, want %q among them", tc.name, r.Failover.Problems, tc.want)
		}
	}
	// A strongSwan client that kept its SA and lost under 3 s of traffic
	// is fine.
	r = goodFailover()
	r.Clients = []Client{{Name: "s1", IKE: IKESA{State: "ESTABLISHED"}, DPD: DPD{SameIKESA: true, FromGateway: 2}, Ping: Ping{Sent: 100, Received: 85, LongestGapMS: 1500}}}
	judgeFailover(r, o)
	if len(r.Failover.Problems) != 0 {
		t.Errorf("problems with a strongSwan client that kept its tunnel: %v", r.Failover.Problems)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestWriteFailover: the text report tells the story: the cluster, the
// counts before and after, the kill, the takeover and resync times, the
// clients, and problems when there are some.
func TestWriteFailover(t *testing.T) {
	r := goodFailover()
	r.Steps = []Step{{Name: "network", DurationMS: 800}, {Name: "takeover", DurationMS: 1480}}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"hike lab: failover: test\n",
		"cluster    node1 at 10.99.0.11:7946, VIP 10.99.1.1, namespace hkl1n1, leader\n",
		"before     node1 100, node2 100, node3 100 (300 IKE SAs)\n",
		"steady     4s of DPD: the nodes sent 290 requests, 290 answered; raft replicated 0 entries (0 SA puts, 0 Message ID updates), the nodes sent 3000 B\n",
		"kill       node1 (the leader, VIP 10.99.1.1, 100 IKE SAs, 100 with RFC 6311): link down, SIGKILL\n",
		"takeover   new leader node2 after 1.2s, VIP 10.99.1.1 taken over by node3 after 1.5s\n",
		"takeover   new leader node2 after 1.2s, VIP 10.99.1.1 taken over by node3 after 1.5s\n           node2 not serving from 500ms to 1.2s after the kill; node3 not serving from 480ms to 1.3s after the kill\nresync     100 of 100 SAs restored on node3, listed 1.5s after the kill; 100 of 100 resynchronised (RFC 6311), the first 1.5s and the last 1.7s after the kill\n",
		"after      node2 100, node3 200 (300 IKE SAs); replicated records by owner: node2 100, node3 200 (300 IKE SAs)\n",
		"           from the kill to the end raft replicated 4 entries: 1 VIP move, 100 SA puts, 0 SA deletes\n",
		"clients    l1 -> 10.99.1.1 (node1): 100/100 established, 100 up at the end; DPD 400 sent, 400 completed, 0 timeouts; 100 resyncs answered, 60 retransmits\n",
		"           all: 300/300 established, 300 up at the end; DPD 1200 sent, 1200 completed, 0 timeouts; 100 resyncs answered, 60 retransmits\n",
		"steps: network 800ms, takeover 1.5s;",
		"result: OK\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "gateway") || strings.Contains(text, "PROBLEM") {
		t.Errorf("a good failover's report mentions a gateway or a problem:\n%s", text)
	}
	r.Clients = []Client{
		{Name: "s1", VIP: "10.99.1.1", IKE: IKESA{State: "ESTABLISHED", SPIi: "00000000000000a1", SPIr: "00000000000000b1"},
			Ping: Ping{Sent: 100, Received: 88, LongestGapMS: 1200}, DPD: DPD{FromGateway: 3, FromClient: 1, SameIKESA: true}},
		{Name: "s2", VIP: "10.99.1.2", Ping: Ping{Sent: 100, Received: 20, LongestGapMS: 8000}},
	}
	b.Reset()
	r.WriteText(&b)
	for _, want := range []string{
		"strongSwan s1 -> 10.99.1.1: ESTABLISHED 00000000000000a1/00000000000000b1 (same SPIs); ping 88/100 answered, 12 lost, longest gap 1.2s; DPD after the kill: 3 from the cluster, 1 to it\n",
		"           s2 -> 10.99.1.2: no IKE SA; ping 20/100 answered, 80 lost, longest gap 8s; DPD after the kill: 0 from the cluster, 0 to it\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	calm := goodFailover()
	calm.Failover.NotServing = nil
	b.Reset()
	calm.WriteText(&b)
	if want := "by node3 after 1.5s\n           every survivor served throughout\n"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	noSync := goodFailover()
	noSync.Failover.KilledSAsRFC6311, noSync.Failover.Resynced, noSync.Failover.FirstResyncMS, noSync.Failover.LastResyncMS = 0, 0, 0, 0
	b.Reset()
	noSync.WriteText(&b)
	if want := "resync     100 of 100 SAs restored on node3, listed 1.5s after the kill; none negotiated RFC 6311: their counters come from the replicated records\n"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	r.OK, r.Error = false, "check: 1 problem: see the report"
	r.Failover.Problems = []string{"simulated clients saw 2 DPD timeouts"}
	b.Reset()
	r.WriteText(&b)
	if !strings.Contains(b.String(), "PROBLEM    simulated clients saw 2 DPD timeouts\n") ||
		!strings.Contains(b.String(), "result: FAILED: check: 1 problem: see the report\n") {
		t.Errorf("problems not reported:\n%s", b.String())
	}
}

func TestFailoverDefaults(t *testing.T) {
	o, err := Options{Hike: "/bin/true"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Scenario != "failover" || o.Nodes != 3 || o.Clients != 300 || o.StrongSwan != 0 ||
		o.DPD != 2*time.Second || o.KillAfter != 4*time.Second {
		t.Errorf("defaults %+v", o)
	}
	o, err = Options{Hike: "/bin/true", DPD: 3 * time.Second}.withDefaults()
	if err != nil || o.KillAfter != 6*time.Second {
		t.Errorf("kill after %v (%v), want two DPD delays", o.KillAfter, err)
	}
	o, err = Options{Hike: "/bin/true", Witness: true}.withDefaults()
	if err != nil || o.Nodes != 2 {
		t.Errorf("with a witness: %d nodes (%v), want the pair", o.Nodes, err)
	}
	for _, good := range []Options{{Witness: true, Nodes: 6}, {Kill: KillLeader}, {Kill: KillFollower}, {Kill: KillBusiest}, {Kill: "node3"}, {Nodes: 5, Kill: "node5"}} {
		good.Hike = "/bin/true"
		if _, err := good.withDefaults(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
	for _, bad := range []Options{
		{Nodes: 2}, {Nodes: 8}, {Clients: maxSimulated + 1}, {StrongSwan: maxClients + 1},
		{ClientKind: ClientStrongSwan, Clients: 3}, {DPD: 1500 * time.Millisecond}, {DPD: 500 * time.Millisecond},
		{Witness: true, Nodes: 7}, {Witness: true, Nodes: 1}, {Nodes: 1},
		{KillAfter: -time.Second}, {Kill: "node4"}, {Kill: "node0"}, {Kill: "node01"}, {Kill: "oldest"}, {Kill: "2"},
		{Scenario: "tunnel", Nodes: 3}, {Scenario: "tunnel", StrongSwan: 1}, {Scenario: "tunnel", NoRFC6311: true}, {Scenario: "tunnel", Kill: KillLeader}, {Scenario: "tunnel", Witness: true}, {Scenario: "tunnel", Clients: maxClients + 1},
	} {
		bad.Hike = "/bin/true"
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestOnlyNoSA(t *testing.T) {
	noSA := fmt.Errorf("client s1 %w", errNoSA)
	other := errors.New("swanctl: connection refused")
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{noSA, true},
		{errors.Join(noSA, nil, fmt.Errorf("client s3 %w", errNoSA)), true},
		{errors.Join(noSA, other), false},
		{other, false},
	} {
		if got := onlyNoSA(tc.err); got != tc.want {
			t.Errorf("onlyNoSA(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLoadArgs: each group's `hike load` targets its node's VIP from the
// group's own sources, with identities that node's "load" connection takes,
// and advertises RFC 6311 unless told not to.
func TestLoadArgs(t *testing.T) {
	dir := t.TempDir()
	p, err := newPKI(dir, memberIDs(3, false))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node2.yaml")
	if err := os.WriteFile(path, []byte(nodeConfig(dir, p, 2, 3, false, 2*time.Second, false)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	target := &node{i: 2, id: "node2", vip: nodeVIP(2)}
	for _, noSync := range []bool{false, true} {
		o := Options{Hike: "/usr/bin/hike", DPD: 3 * time.Second, NoRFC6311: noSync}
		args := loadArgs(o, &loadGroup{i: 2, clients: 77, target: target}, p.PSK, 200)
		if args[0] != "/usr/bin/hike" || args[1] != "load" {
			t.Fatalf("args %q", args)
		}
		flags := map[string]string{}
		for i := 2; i < len(args); i++ {
			name, val, ok := strings.Cut(args[i], "=")
			if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				val = args[i+1]
				i++
			}
			flags[name] = val
		}
		if got := flags["--target"]; got != "10.99.1.2" {
			t.Errorf("--target %s, want node2's VIP", got)
		}
		if flags["--clients"] != "77" || flags["--rate"] != "200/s" || flags["--dpd"] != "3s" || flags["--psk-file"] != p.PSK {
			t.Errorf("flags %v", flags)
		}
		if got := flags["--sources"]; got != "10.202.0.0/16" {
			t.Errorf("--sources %s, want group 2's", got)
		}
		id := fmt.Sprintf(flags["--id-fmt"], 76)
		if !cfg.Connection("load").Remote.ID.Matches(wire.ID_FQDN, []byte(id)) {
			t.Errorf("client identity %q not taken by the nodes", id)
		}
		if want := strconv.FormatBool(!noSync); flags["--rfc6311"] != want {
			t.Errorf("--rfc6311=%s, want %s", flags["--rfc6311"], want)
		}
		for _, f := range []string{"--child", "--vip", "--json"} {
			if _, ok := flags[f]; !ok {
				t.Errorf("%s missing", f)
			}
		}
	}
}

// FuzzFailoverParsers: what the failover scenario reads from hike's
// control socket, hike load and ping takes anything without panicking, and
// a gap is never negative.
func FuzzFailoverParsers(f *testing.F) {
	for _, seed := range []string{statusJSON, loadOutput, "", "{\n", "64 bytes from x: icmp_seq=3 ttl=1\n2 packets transmitted",
		"64 bytes from x: icmp_seq=99999999999999999999 ttl=1\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if st, err := parseStatus([]byte(s)); err == nil {
			st.owner(nodeVIP(1).Addr())
			st.member("node1")
		}
		parseLoadSummary(s)
		gap := longestGap(s, time.Millisecond)
		if gap < 0 {
			t.Fatalf("negative gap %d", gap)
		}
	})
}
