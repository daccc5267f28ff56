package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

var labSeq atomic.Int32

// The network: one bridge (in namespace "sw") joins everything.
//
//	node i:          eth0 10.90.0.i/16, VIP 10.90.0.1i/16 while it serves it,
//	                 lo 10.97.0.1/32 (the same inner address on every node)
//	charon client j: eth0 10.90.1.j/16, lo 10.98.0.j/32 (its tunnel address)
//	load group k:    eth0 10.90.2.k/16, lo 10.201.k.0/24 (hike load's sources)
const (
	nodes      = 3
	bridgeBits = 16
	innerAddr  = "10.97.0.1"
	raftPort   = 7946
	testPSK    = "hike cluster test pre-shared key"
)

func nodeID(i int) string       { return fmt.Sprintf("node%d", i) }
func nodeAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 90, 0, byte(i)}) }
func vipOf(i int) netip.Addr    { return netip.AddrFrom4([4]byte{10, 90, 0, byte(10 + i)}) }
func loadNet(k int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 201, byte(k), 0}), 24)
}
func loadAddr(k int) netip.Addr    { return netip.AddrFrom4([4]byte{10, 90, 2, byte(k)}) }
func clientAddr(j int) netip.Addr  { return netip.AddrFrom4([4]byte{10, 90, 1, byte(j)}) }
func clientInner(j int) netip.Addr { return netip.AddrFrom4([4]byte{10, 98, 0, byte(j)}) }

// vipNode maps a VIP back to the node it is homed at.
func vipNode(a netip.Addr) int {
	for i := 1; i <= nodes; i++ {
		if vipOf(i) == a {
			return i
		}
	}
	return 0
}

// env is a 3-node hike cluster on a bridge, with its clients. With
// witness set, that node runs `hike witness` instead of `hike serve` and
// owns no VIP: a pair of concentrators and a witness.
type env struct {
	t       testing.TB
	lab     *netlab.Lab
	dir     string
	hub     *netlab.NS
	nodes   [nodes + 1]*node // 1-based
	witness int              // the node that only votes, 0 for none
	clients []*client
	loads   []*loadGroup
	hikeDPD string // DPD delay of hike's connection for strongSwan
	loadDPD string // DPD delay of hike's connection for hike load
}

type node struct {
	i    int
	ns   *netlab.NS
	dir  string
	conf string
	proc *netlab.Proc
	runs int
}

type client struct {
	j     int
	ns    *netlab.NS
	vip   netip.Addr // the VIP it connects to
	dpd   time.Duration
	swan  *swan.Daemon
	ping  *netlab.Proc
	inits int // IKE_SA_INITs in its log when last counted
}

// loadGroup is one `hike load` process with its own namespace, sources
// and target VIP.
type loadGroup struct {
	k       int
	ns      *netlab.NS
	vip     netip.Addr
	clients int
	rfc6311 bool
	proc    *netlab.Proc
}

// newEnv builds the network and starts the three nodes. The caller closes
// it (t.Cleanup or, for the shared environment, TestMain).
func newEnv(t testing.TB) (*env, error) {
	prefix := fmt.Sprintf("hc%d%c", os.Getpid()%100, 'a'+labSeq.Add(1)%26)
	lab, err := netlab.New(prefix)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hike-cluster-")
	if err != nil {
		return nil, err
	}
	e := &env{t: t, lab: lab, dir: dir, hikeDPD: "2s", loadDPD: "60s"}
	if e.hub, err = lab.AddNS("sw"); err != nil {
		return e, err
	}
	if err := e.hub.Bridge("br0", netip.Prefix{}); err != nil {
		return e, err
	}
	issue := pki(t, dir)
	writeKey(t, filepath.Join(dir, "cluster.key"))
	if err := os.WriteFile(filepath.Join(dir, "psk"), []byte(testPSK+"\n"), 0o600); err != nil {
		return e, err
	}
	for i := 1; i <= nodes; i++ {
		ns, err := lab.AddNS(fmt.Sprintf("n%d", i))
		if err != nil {
			return e, err
		}
		n := &node{i: i, ns: ns, dir: filepath.Join(dir, nodeID(i))}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return e, err
		}
		if err := lab.Attach(e.hub, "br0", fmt.Sprintf("n%d", i), ns, "eth0", netip.PrefixFrom(nodeAddr(i), bridgeBits)); err != nil {
			return e, err
		}
		if err := ns.AddAddr("lo", netip.MustParsePrefix(innerAddr+"/32")); err != nil {
			return e, err
		}
		issue(nodeID(i))
		e.nodes[i] = n
	}
	return e, nil
}

// close stops everything and removes the namespaces, and the files unless
// keep is set (a failed test leaves its logs for a look).
func (e *env) close(keep bool) {
	if e == nil {
		return
	}
	e.lab.Close()
	if keep {
		fmt.Fprintf(os.Stderr, "test/cluster: logs of the failed test kept in %s\n", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

// dump logs the tails of every node's output, for a failed test.
func (e *env) dump(t testing.TB) {
	for i := 1; i <= nodes; i++ {
		if n := e.nodes[i]; n != nil && n.proc != nil {
			t.Logf("node%d output (run %d):\n%s", i, n.runs, tailLines(n.proc.Out.String(), 80))
		}
	}
}

func (e *env) writeConfigs() {
	for i := 1; i <= nodes; i++ {
		n := e.nodes[i]
		var peers strings.Builder
		for p := 1; p <= nodes; p++ {
			if p == e.witness {
				fmt.Fprintf(&peers, "    - id: %s\n      address: %s:%d\n      witness: true\n", nodeID(p), nodeAddr(p), raftPort)
				continue
			}
			fmt.Fprintf(&peers, "    - id: %s\n      address: %s:%d\n      vips: [%s/%d]\n",
				nodeID(p), nodeAddr(p), raftPort, vipOf(p), bridgeBits)
		}
		if i == e.witness {
			n.conf = witnessConf(n.dir, e.dir, nodeID(i), peers.String())
		} else {
			n.conf = fmt.Sprintf(`listen:
  addrs: [0.0.0.0]
control_socket: %[1]s/control.sock
log:
  level: info
limits:
  half_open_cookie_threshold: 1000000
secrets:
  clients:
    psk: %[2]q
connections:
  - name: swan
    local:
      id: gw.example
      auth: psk
    remote:
      addrs: any
      id: "*.example"
    psk: clients
    ike:
      proposals: [aes256-sha256-ecp256]
    dpd:
      delay: %[3]s
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: [10.98.0.0/16]
        esp:
          proposals: [aes256gcm16]
  - name: load
    local:
      id: gw.load
      auth: psk
    remote:
      addrs: any
      id: "*.load"
    psk: clients
    dpd:
      delay: %[4]s
    # hike load negotiates no Child SA unless asked; this one is unused.
    children:
      - name: net
        local_ts: [10.97.0.0/16]
        remote_ts: [10.201.0.0/16]
cluster:
  node_id: %[5]s
  data_dir: %[1]s/raft
  key_file: %[6]s/cluster.key
  interface: eth0
  heartbeat_timeout: 500ms
  election_timeout: 1s
  tls:
    ca: %[6]s/ca.pem
    cert: %[6]s/%[5]s.pem
    key: %[6]s/%[5]s.key
  peers:
%[7]s`, n.dir, testPSK, e.hikeDPD, e.loadDPD, nodeID(i), e.dir, peers.String())
		}
		if err := os.WriteFile(filepath.Join(n.dir, "hike.yaml"), []byte(n.conf), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
}

// witnessConf is a witness's whole configuration: its control socket and
// the cluster section, with the same timing as the concentrators' and no
// cluster key (it never opens an SA record).
func witnessConf(dir, pki, id, peers string) string {
	return fmt.Sprintf(`control_socket: %[1]s/control.sock
log:
  level: info
cluster:
  node_id: %[3]s
  data_dir: %[1]s/raft
  heartbeat_timeout: 500ms
  election_timeout: 1s
  tls:
    ca: %[2]s/ca.pem
    cert: %[2]s/%[3]s.pem
    key: %[2]s/%[3]s.key
  peers:
%[4]s`, dir, pki, id, peers)
}

func (e *env) socket(i int) string { return filepath.Join(e.nodes[i].dir, "control.sock") }

// start runs `hike serve` on node i (again, after a kill: same config and
// data directory) and returns once its control socket answers.
func (e *env) start(i int) error {
	n := e.nodes[i]
	n.runs++
	run := "serve"
	if i == e.witness {
		run = "witness"
	}
	p, err := n.ns.Start(nodeID(i), filepath.Join(n.dir, fmt.Sprintf("hike.%d.log", n.runs)),
		hikeBin, run, "-c", filepath.Join(n.dir, "hike.yaml"))
	if err != nil {
		return err
	}
	n.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := e.saList(i)
		if err == nil {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("node%d did not start (%v):\n%s", i, err, tailLines(p.Out.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startCluster writes the configurations, starts all nodes at once and
// waits until a leader has handed every node its own VIP (a witness none).
func (e *env) startCluster() error {
	e.writeConfigs()
	errs := parallel(nodes, e.start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return e.waitCond(30*time.Second, "every node to serve its own VIP", func() error {
		for i := 1; i <= nodes; i++ {
			var own []netip.Addr
			if i != e.witness {
				own = append(own, vipOf(i))
			}
			if err := e.servesOnly(i, own...); err != nil {
				return err
			}
		}
		return nil
	})
}

// kill SIGKILLs node i's hike, as a crash would, and returns when it is gone.
func (e *env) kill(i int) time.Time {
	p := e.nodes[i].proc
	p.Signal(syscall.SIGKILL)
	at := time.Now()
	p.Wait()
	return at
}

// alive returns the nodes whose hike runs.
func (e *env) alive() []int {
	var out []int
	for i := 1; i <= nodes; i++ {
		if p := e.nodes[i].proc; p != nil && !p.Exited() {
			out = append(out, i)
		}
	}
	return out
}

// index returns the number of the node with the given ID, 0 for none.
func (e *env) index(id string) int {
	for i := 1; i <= nodes; i++ {
		if nodeID(i) == id {
			return i
		}
	}
	return 0
}

// hikeCmd runs a hike client command in node i's namespace.
func (e *env) hikeCmd(i int, args ...string) ([]byte, error) {
	return e.nodes[i].ns.Run(append([]string{hikeBin}, append(args, "--socket", e.socket(i))...)...)
}

// status is `hike cluster status --json`.
type status struct {
	Node         string `json:"node"`
	Leader       string `json:"leader"`
	Serving      bool   `json:"serving"`
	Witness      bool   `json:"witness"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID            string `json:"id"`
		Address       string `json:"address"`
		Witness       bool   `json:"witness"`
		Leader        bool   `json:"leader"`
		Reachable     bool   `json:"reachable"`
		LastContactMS int64  `json:"last_contact_ms"`
	} `json:"members"`
	VIPs []struct {
		VIP   string `json:"vip"`
		Owner string `json:"owner"`
		Home  string `json:"home"`
	} `json:"vips"`
	SAs         map[string]int `json:"sas"`
	Replication replication    `json:"replication"`
}

type replication struct {
	Entries    uint64 `json:"entries"`
	SAPuts     uint64 `json:"sa_puts"`
	SADeletes  uint64 `json:"sa_deletes"`
	SAMIDs     uint64 `json:"sa_mids"`
	VIPMoves   uint64 `json:"vip_moves"`
	EntryBytes uint64 `json:"entry_bytes"`
	TxBytes    uint64 `json:"tx_bytes"`
	RxBytes    uint64 `json:"rx_bytes"`
}

func (r replication) sub(o replication) replication {
	return replication{Entries: r.Entries - o.Entries, SAPuts: r.SAPuts - o.SAPuts, SADeletes: r.SADeletes - o.SADeletes,
		SAMIDs: r.SAMIDs - o.SAMIDs, VIPMoves: r.VIPMoves - o.VIPMoves, EntryBytes: r.EntryBytes - o.EntryBytes,
		TxBytes: r.TxBytes - o.TxBytes, RxBytes: r.RxBytes - o.RxBytes}
}

func (e *env) status(i int) (*status, error) {
	out, err := e.hikeCmd(i, "cluster", "status", "--json")
	if err != nil {
		return nil, err
	}
	var s status
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("node%d: cluster status --json: %v: %s", i, err, out)
	}
	return &s, nil
}

// owner returns the owner of vip in s, "" if none.
func (s *status) owner(vip netip.Addr) string {
	for _, v := range s.VIPs {
		if strings.Split(v.VIP, "/")[0] == vip.String() {
			return v.Owner
		}
	}
	return ""
}

// saList is `hike sa list --json` on node i.
func (e *env) saList(i int) ([]ike.SAInfo, error) {
	out, err := e.hikeCmd(i, "sa", "list", "--json")
	if err != nil {
		return nil, err
	}
	var sas []ike.SAInfo
	if err := json.Unmarshal(out, &sas); err != nil {
		return nil, fmt.Errorf("node%d: sa list --json: %v: %s", i, err, out)
	}
	return sas, nil
}

// saKey identifies an IKE SA on both sides.
type saKey struct{ spiI, spiR string }

// listed returns, for every IKE SA the running nodes list, the nodes that
// list it.
func (e *env) listed() (map[saKey][]int, error) { return e.listedOn(e.alive()) }

// listedOn is listed for the given nodes only.
func (e *env) listedOn(on []int) (map[saKey][]int, error) {
	out := map[saKey][]int{}
	for _, i := range on {
		sas, err := e.saList(i)
		if err != nil {
			return nil, err
		}
		for _, sa := range sas {
			if sa.State != "established" && sa.State != "ESTABLISHED" {
				continue
			}
			k := saKey{strings.ToLower(sa.SPIi), strings.ToLower(sa.SPIr)}
			out[k] = append(out[k], i)
		}
	}
	return out, nil
}

// vipsIn returns the cluster VIPs configured on node i's eth0 right now.
func (e *env) vipsIn(i int) ([]netip.Addr, error) {
	out, err := e.nodes[i].ns.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0")
	if err != nil {
		return nil, err
	}
	var vips []netip.Addr
	for _, f := range strings.Fields(string(out)) {
		p, err := netip.ParsePrefix(f)
		if err == nil && vipNode(p.Addr()) != 0 {
			vips = append(vips, p.Addr())
		}
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	return vips, nil
}

// servesOnly checks that node i has exactly the VIPs want on its
// interface.
func (e *env) servesOnly(i int, want ...netip.Addr) error {
	got, err := e.vipsIn(i)
	if err != nil {
		return err
	}
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		return fmt.Errorf("node%d has VIPs %v, want %v", i, got, want)
	}
	return nil
}

// waitCond polls cond until it returns nil or timeout passes.
func (e *env) waitCond(timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s: %w", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addLoad creates load group k: n simulated clients of `hike load` towards
// vip, with RFC 6311 on or off, probing with DPD every dpd. They run until
// stopLoad.
func (e *env) addLoad(k int, vip netip.Addr, n int, rfc6311 bool, dpd string) (*loadGroup, error) {
	ns, err := e.lab.AddNS(fmt.Sprintf("l%d", k))
	if err != nil {
		return nil, err
	}
	if err := e.lab.Attach(e.hub, "br0", fmt.Sprintf("l%d", k), ns, "eth0", netip.PrefixFrom(loadAddr(k), bridgeBits)); err != nil {
		return nil, err
	}
	// On lo a prefix makes every address in it local; the nodes route it
	// through the group's bridge address.
	if err := ns.AddAddr("lo", loadNet(k)); err != nil {
		return nil, err
	}
	for i := 1; i <= nodes; i++ {
		if _, err := e.nodes[i].ns.Run("ip", "route", "add", loadNet(k).String(), "via", loadAddr(k).String()); err != nil {
			return nil, err
		}
	}
	g := &loadGroup{k: k, ns: ns, vip: vip, clients: n, rfc6311: rfc6311}
	g.proc, err = ns.Start(fmt.Sprintf("load%d", k), filepath.Join(e.dir, fmt.Sprintf("load%d.log", k)),
		hikeBin, "load", "--target", vip.String(), "--clients", fmt.Sprint(n), "--rate", "50/s",
		"--dpd", dpd, "--psk-file", filepath.Join(e.dir, "psk"), "--sources", loadNet(k).String(),
		"--id-fmt", fmt.Sprintf("l%d-%%d.load", k), fmt.Sprintf("--rfc6311=%v", rfc6311),
		"--duration", "3600s", "--json")
	if err != nil {
		return nil, err
	}
	e.loads = append(e.loads, g)
	return g, nil
}

// stop ends the group's run and returns its summary.
func (g *loadGroup) stop() (*loadSummary, error) {
	g.proc.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { g.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.proc.Kill()
		return nil, fmt.Errorf("load%d did not stop on SIGTERM", g.k)
	}
	out := g.proc.Out.String()
	start := strings.Index(out, "{")
	if start < 0 {
		return nil, fmt.Errorf("load%d printed no summary:\n%s", g.k, tailLines(out, 20))
	}
	var s loadSummary
	if err := json.Unmarshal([]byte(out[start:]), &s); err != nil {
		return nil, fmt.Errorf("load%d summary: %v:\n%s", g.k, err, tailLines(out, 20))
	}
	return &s, nil
}

// loadSummary is the part of `hike load --json` the tests read.
type loadSummary struct {
	Established int64            `json:"established"`
	Failed      int64            `json:"failed"`
	Failures    map[string]int64 `json:"failures_by_reason"`
	UpAtEnd     int64            `json:"established_at_end"`
	DPD         struct {
		Sent      uint64 `json:"sent"`
		Completed uint64 `json:"completed"`
		Failed    uint64 `json:"failed"`
		Timeouts  uint64 `json:"timeouts"`
	} `json:"dpd"`
	ResyncsSeen uint64 `json:"resyncs_seen"`
	Retransmits uint64 `json:"retransmits"`
}

// parallel runs f(1..n) concurrently and returns the errors by index.
func parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i-1] = f(i)
		}()
	}
	wg.Wait()
	return errs
}

// joinErrors reports the first few errors of a parallel run.
func joinErrors(what string, errs []error) error {
	var msgs []string
	for i, err := range errs {
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("#%d: %v", i+1, err))
		}
	}
	if n := len(msgs); n > 0 {
		if n > 5 {
			msgs = append(msgs[:5], fmt.Sprintf("... and %d more", n-5))
		}
		return fmt.Errorf("%s failed for %d of %d:\n%s", what, n, len(errs), strings.Join(msgs, "\n"))
	}
	return nil
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// newCluster is a fresh 3-node cluster of the calling test's own, removed
// when the test ends.
func newCluster(t *testing.T) *env {
	t.Helper()
	requireLab(t)
	e, err := newEnv(t)
	t.Cleanup(func() {
		if t.Failed() && e != nil {
			e.dump(t)
		}
		e.close(t.Failed())
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.startCluster(); err != nil {
		t.Fatal(err)
	}
	return e
}

// mostLoaded returns the running node that lists the most SAs and the
// count per node.
func (e *env) mostLoaded() (int, map[int]int, error) {
	l, err := e.listed()
	if err != nil {
		return 0, nil, err
	}
	load := map[int]int{}
	for _, ns := range l {
		for _, i := range ns {
			load[i]++
		}
	}
	best := 0
	for _, i := range e.alive() {
		if best == 0 || load[i] > load[best] {
			best = i
		}
	}
	return best, load, nil
}

// holders returns the running nodes that have vip on their interface. A
// SIGKILLed hike leaves its addresses behind (nothing in the kernel ties
// them to the process), so a killed node's namespace still has them; a
// crashed host would not, and the taker's gratuitous ARP redirects the
// clients either way.
func (e *env) holders(vip netip.Addr) ([]int, error) {
	var hs []int
	for _, i := range e.alive() {
		vips, err := e.vipsIn(i)
		if err != nil {
			return nil, err
		}
		if slices.Contains(vips, vip) {
			hs = append(hs, i)
		}
	}
	return hs, nil
}

// holder returns the node that has vip on its interface (0 for none) and
// an error if more than one has it.
func (e *env) holder(vip netip.Addr) (int, error) {
	hs, err := e.holders(vip)
	switch {
	case err != nil:
		return 0, err
	case len(hs) > 1:
		return 0, fmt.Errorf("VIP %s on nodes %v at once", vip, hs)
	case len(hs) == 1:
		return hs[0], nil
	}
	return 0, nil
}

// waitListed waits until the running nodes list want SAs, each once.
func (e *env) waitListed(timeout time.Duration, want int) error {
	return e.waitListedOn(e.alive(), timeout, want)
}

// waitListedOn is waitListed for the given nodes only.
func (e *env) waitListedOn(on []int, timeout time.Duration, want int) error {
	return e.waitCond(timeout, fmt.Sprintf("%d SAs listed once each on nodes %v", want, on), func() error {
		l, err := e.listedOn(on)
		if err != nil {
			return err
		}
		for k, ns := range l {
			if len(ns) != 1 {
				return fmt.Errorf("SA %s/%s listed by nodes %v", k.spiI, k.spiR, ns)
			}
		}
		if len(l) != want {
			return fmt.Errorf("%d SAs listed", len(l))
		}
		return nil
	})
}
