package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/loadgen"
	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// failoverScenario is the mission on one machine: a cluster of hike nodes
// serves clients spread over the nodes' VIPs with steady DPD; the node that
// owns the most SAs is killed outright; a survivor takes its VIP and SAs
// over and resynchronises them (RFC 6311); the report says what the clients
// and the cluster saw.
var failoverScenario = &Scenario{
	Name:        "failover",
	Description: "a hike cluster with simulated clients loses its busiest node (SIGKILL); a survivor takes over and resyncs (RFC 6311)",
	summary: func(o Options) string {
		s := fmt.Sprintf("failover: %d hike nodes", o.Nodes)
		if o.Witness {
			s += " and a witness"
		}
		s += fmt.Sprintf(", %d simulated client%s", o.Clients, plural(o.Clients))
		if o.NoRFC6311 {
			s += " without RFC 6311"
		}
		if o.StrongSwan > 0 {
			s += fmt.Sprintf(" and %d strongSwan client%s", o.StrongSwan, plural(o.StrongSwan))
		}
		return s + fmt.Sprintf(", DPD every %s, %s killed after %s of steady DPD", seconds(o.DPD), killWhat(o.Kill), o.KillAfter)
	},
	steps: []step{
		{"network", buildCluster},
		{"cluster", startCluster},
		{"clients", startClusterClients},
		{"steady", steady},
		{"kill", killNode},
		{"takeover", awaitTakeover},
		{"resync", awaitResync},
		{"observe", observe},
		{"check", checkFailover},
	},
}

// cluster is what the failover scenario adds to a running lab.
type cluster struct {
	sw      *netlab.NS // the switch: one bridge for every node and client
	pki     *pki
	nodes   []*node
	witness *node // with Options.Witness
	groups  []*loadGroup
	victim  *node
	killed  time.Time
	// victimSAs are the SAs the victim served when it was killed.
	victimSAs []ike.SAInfo
	// beforeKill is the replication counters at the end of the steady
	// period.
	beforeKill Replication
	serving    *servingWatch
	swanLogAt  []int          // length of each strongSwan client's log at the kill
	pings      []*netlab.Proc // one continuous ping per strongSwan client
}

type node struct {
	i      int // 0 for the witness
	id     string
	ns     *netlab.NS
	proc   *netlab.Proc
	ctl    *control.Client
	vip    netip.Prefix
	killed bool
}

// voters are the members that can answer for the cluster: the nodes not
// killed and the witness.
func (c *cluster) voters() []*node {
	var vs []*node
	for _, n := range c.nodes {
		if !n.killed {
			vs = append(vs, n)
		}
	}
	if c.witness != nil {
		vs = append(vs, c.witness)
	}
	return vs
}

// loadGroup is one `hike load` process: simulated clients of one node's VIP.
type loadGroup struct {
	i       int
	ns      *netlab.NS
	proc    *netlab.Proc
	clients int
	target  *node
}

// begin makes what every scenario starts from: a clean slate (a killed
// lab's leftovers removed), the run's directory and the claim on its
// prefix.
func (e *env) begin() error {
	for _, p := range sweep() {
		e.logf("removed what a killed lab left: namespaces %s*", p)
	}
	dir, err := os.MkdirTemp("", "hike-lab-")
	if err != nil {
		return err
	}
	e.dir = dir
	if e.lab, err = netlab.New(e.o.Prefix); err != nil {
		return err
	}
	if err := claim(e.o.Prefix, dir); err != nil {
		return err
	}
	e.claimed = true
	e.logf("namespaces %s*, files in %s", e.o.Prefix, dir)
	return nil
}

// buildCluster makes the switch, the nodes, the groups of simulated
// clients and the strongSwan clients, all on one bridge.
func buildCluster(ctx context.Context, e *env, r *Report) error {
	if err := e.begin(); err != nil {
		return err
	}
	c := &cluster{}
	e.cl = c
	r.Failover = &Failover{}
	var err error
	if c.sw, err = e.lab.AddNS("sw"); err != nil {
		return err
	}
	if err := c.sw.Bridge("br0", netip.Prefix{}); err != nil {
		return err
	}
	groups := spread(e.o.Clients, e.o.Nodes)
	for i := 1; i <= e.o.Nodes; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &node{i: i, id: nodeID(i), vip: nodeVIP(i)}
		if n.ns, err = e.lab.AddNS(fmt.Sprintf("n%d", i)); err != nil {
			return err
		}
		if err := e.lab.Attach(c.sw, "br0", fmt.Sprintf("vn%d", i), n.ns, clusterIf, netip.PrefixFrom(nodeAddr(i), outerBits)); err != nil {
			return err
		}
		if err := n.ns.AddAddr("lo", netip.PrefixFrom(gwInner, 32)); err != nil {
			return err
		}
		for g := 1; g <= e.o.Nodes; g++ {
			if groups[g-1] == 0 {
				continue
			}
			if _, err := n.ns.Run("ip", "route", "add", loadSources(g).String(), "via", loadAddr(g).String()); err != nil {
				return err
			}
		}
		c.nodes = append(c.nodes, n)
		r.Failover.Nodes = append(r.Failover.Nodes, Node{ID: n.id, Namespace: n.ns.Name,
			Address: netip.AddrPortFrom(nodeAddr(i), raftPort).String(), VIP: n.vip.Addr().String()})
	}
	if e.o.Witness {
		w := &node{id: witnessID}
		if w.ns, err = e.lab.AddNS("w"); err != nil {
			return err
		}
		if err := e.lab.Attach(c.sw, "br0", "vw", w.ns, clusterIf, netip.PrefixFrom(witnessAddr, outerBits)); err != nil {
			return err
		}
		c.witness = w
		r.Failover.Nodes = append(r.Failover.Nodes, Node{ID: w.id, Namespace: w.ns.Name,
			Address: netip.AddrPortFrom(witnessAddr, raftPort).String(), Witness: true})
	}
	for i := 1; i <= e.o.Nodes; i++ {
		if groups[i-1] == 0 {
			continue
		}
		g := &loadGroup{i: i, clients: groups[i-1], target: c.nodes[i-1]}
		if g.ns, err = e.lab.AddNS(fmt.Sprintf("l%d", i)); err != nil {
			return err
		}
		if err := e.lab.Attach(c.sw, "br0", fmt.Sprintf("vl%d", i), g.ns, "eth0", netip.PrefixFrom(loadAddr(i), outerBits)); err != nil {
			return err
		}
		if err := g.ns.AddAddr("lo", loadSources(i)); err != nil {
			return err
		}
		c.groups = append(c.groups, g)
	}
	for j := 1; j <= e.o.StrongSwan; j++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		cl := &client{name: fmt.Sprintf("s%d", j)}
		cl.outer, cl.inner = clientAddrs(j)
		if cl.ns, err = e.lab.AddNS(cl.name); err != nil {
			return err
		}
		if err := e.lab.Attach(c.sw, "br0", fmt.Sprintf("vs%d", j), cl.ns, "eth0", netip.PrefixFrom(cl.outer, outerBits)); err != nil {
			return err
		}
		if err := cl.ns.AddAddr("lo", netip.PrefixFrom(cl.inner, 32)); err != nil {
			return err
		}
		e.clients = append(e.clients, cl)
		r.Clients = append(r.Clients, Client{Name: cl.name, Namespace: cl.ns.Name, Kind: ClientStrongSwan,
			Outer: cl.outer.String(), Inner: cl.inner.String(), VIP: swanTarget(c.nodes, j).vip.Addr().String()})
	}
	return nil
}

func killWhat(how string) string {
	switch how {
	case "", KillBusiest:
		return "the node with the most SAs"
	case KillLeader:
		return "the leader"
	case KillFollower:
		return "the follower with the most SAs"
	}
	return how
}

// swanTarget is the node whose VIP strongSwan client j (1-based) dials:
// round robin, so that every node serves some.
func swanTarget(nodes []*node, j int) *node { return nodes[(j-1)%len(nodes)] }

// startCluster writes the PKI and the nodes' configurations, runs `hike
// serve` on every node and waits until the cluster has a leader and every
// node serves its own VIP.
func startCluster(ctx context.Context, e *env, r *Report) error {
	c := e.cl
	var err error
	if c.pki, err = newPKI(e.dir, memberIDs(e.o.Nodes, e.o.Witness)); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := os.MkdirAll(filepath.Join(e.dir, n.id), 0o700); err != nil {
			return err
		}
		cfg := filepath.Join(e.dir, n.id+".yaml")
		if err := os.WriteFile(cfg, []byte(nodeConfig(e.dir, c.pki, n.i, e.o.Nodes, e.o.Witness, e.o.DPD, e.o.StrongSwan > 0)), 0o600); err != nil {
			return err
		}
		if n.proc, err = n.ns.Start(n.id, filepath.Join(e.dir, n.id+".log"), e.o.Hike, "serve", "-c", cfg); err != nil {
			return err
		}
		n.ctl = control.NewClient(nodeSocket(e.dir, n.i))
	}
	if w := c.witness; w != nil {
		if err := os.MkdirAll(filepath.Join(e.dir, w.id), 0o700); err != nil {
			return err
		}
		cfg := filepath.Join(e.dir, w.id+".yaml")
		if err := os.WriteFile(cfg, []byte(witnessConfig(e.dir, c.pki, e.o.Nodes)), 0o600); err != nil {
			return err
		}
		if w.proc, err = w.ns.Start(w.id, filepath.Join(e.dir, w.id+".log"), e.o.Hike, "witness", "-c", cfg); err != nil {
			return err
		}
		w.ctl = control.NewClient(witnessSocket(e.dir))
	}
	deadline := time.Now().Add(30 * time.Second)
	var why string
	for {
		ready, w, err := e.clusterReady(ctx)
		if err != nil {
			return err
		}
		if ready {
			break
		}
		why = w
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready within 30s: %s", why)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if st := e.leaderStatus(ctx); st != nil {
		r.Failover.LeaderBefore = st.Leader
	}
	return nil
}

// clusterReady reports whether every member answers and agrees on a
// leader, and every node serves and owns its configured VIP; if not, why.
func (e *env) clusterReady(ctx context.Context) (bool, string, error) {
	leader := ""
	for _, n := range e.cl.voters() {
		if n.proc.Exited() {
			return false, "", fmt.Errorf("%s: hike exited: %s", n.id, lastLines(n.proc.Out.String(), 5))
		}
		st, err := e.status(ctx, n)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", n.id, err), nil
		}
		switch {
		case st.Leader == "":
			return false, n.id + " knows no leader", nil
		case leader != "" && st.Leader != leader:
			return false, fmt.Sprintf("%s follows %s, others %s", n.id, st.Leader, leader), nil
		}
		leader = st.Leader
		if n == e.cl.witness {
			continue // it serves nothing
		}
		if !st.Serving {
			return false, n.id + " is not serving", nil
		}
		if o := st.owner(n.vip.Addr()); o != n.id {
			return false, fmt.Sprintf("%s's VIP %s owned by %q", n.id, n.vip.Addr(), o), nil
		}
	}
	return true, "", nil
}

// leaderStatus is the status as the leader answers it, nil if no member
// says it leads.
func (e *env) leaderStatus(ctx context.Context) *clusterStatus {
	for _, n := range e.cl.voters() {
		if st, err := e.status(ctx, n); err == nil && st.Leader == n.id {
			return st
		}
	}
	return nil
}

// status asks node n for its view of the cluster.
func (e *env) status(ctx context.Context, n *node) (*clusterStatus, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := n.ctl.Do(cctx, http.MethodGet, "/v1/cluster", nil)
	if err != nil {
		return nil, err
	}
	return parseStatus(b)
}

// list asks node n for the SAs it serves.
func (e *env) list(ctx context.Context, n *node) ([]ike.SAInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.ctl.List(cctx)
}

// loadRate is the simulated clients' combined setup rate: quick, yet far
// below what one core of responders sustains, so that setup measures
// nothing and the failover has the machine to itself.
const loadRate = 600

// loadArgs is the command line of group g's `hike load`: its clients
// towards its node's VIP at rate setups a second, from the group's
// sources, with identities the nodes' "load" connection takes, a Child SA
// and a virtual IP each.
func loadArgs(o Options, g *loadGroup, psk string, rate int) []string {
	return []string{o.Hike, "load", "--json",
		"--target", g.target.vip.Addr().String(),
		"--clients", strconv.Itoa(g.clients), "--rate", fmt.Sprintf("%d/s", rate),
		"--dpd", seconds(o.DPD), "--psk-file", psk,
		"--sources", loadSources(g.i).String(), "--id-fmt", "c%d." + loadDomain(g.i),
		"--ike-proposal", ikeProposal, "--esp-proposal", espProposal, "--child", "--vip",
		"--rfc6311=" + strconv.FormatBool(!o.NoRFC6311),
		// Stopped by SIGINT when the scenario is over; the duration only
		// bounds a lab that lost track of it.
		"--duration", "15m"}
}

// startClusterClients starts one `hike load` per node's VIP and the
// strongSwan clients, and waits until every SA is up on its node and
// replicated to the whole cluster.
func startClusterClients(ctx context.Context, e *env, r *Report) error {
	c := e.cl
	psk, err := os.ReadFile(c.pki.PSK)
	if err != nil {
		return err
	}
	rate := max(10, loadRate/len(c.groups))
	for _, g := range c.groups {
		args := loadArgs(e.o, g, c.pki.PSK, rate)
		if g.proc, err = g.ns.Start(fmt.Sprintf("load%d", g.i), filepath.Join(e.dir, fmt.Sprintf("load%d.log", g.i)), args...); err != nil {
			return err
		}
	}
	if len(e.clients) > 0 {
		if err := e.startSwans(ctx, strings.TrimSpace(string(psk))); err != nil {
			return err
		}
	}
	want := map[string]int{}
	for _, g := range c.groups {
		want[g.target.id] += g.clients
	}
	for j := range e.clients {
		want[swanTarget(c.nodes, j+1).id]++
	}
	deadline := time.Now().Add(20*time.Second + time.Duration(e.o.Clients)*time.Second/100)
	for {
		got, why, err := e.allUp(ctx, want)
		if err != nil {
			return err
		}
		if why == "" {
			r.Failover.SAsBefore = got
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clients not all up: %s", why)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if len(e.clients) > 0 {
		return e.readSAs(ctx, r)
	}
	return nil
}

// allUp compares each node's established SAs, and the leader's replicated
// count per owner, with want; it returns the counts and, while they fall
// short, why.
func (e *env) allUp(ctx context.Context, want map[string]int) (map[string]int, string, error) {
	for _, g := range e.cl.groups {
		if g.proc.Exited() {
			return nil, "", fmt.Errorf("hike load %d exited: %s", g.i, lastLines(g.proc.Out.String(), 5))
		}
	}
	got := map[string]int{}
	var why []string
	for _, n := range e.cl.nodes {
		sas, err := e.list(ctx, n)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", n.id, err)
		}
		got[n.id] = countEstablished(sas)
		if got[n.id] != want[n.id] {
			why = append(why, fmt.Sprintf("%s serves %d of %d", n.id, got[n.id], want[n.id]))
		}
	}
	st := e.leaderStatus(ctx)
	if st == nil {
		return got, "no leader", nil
	}
	for _, n := range e.cl.nodes {
		if st.SAs[n.id] != want[n.id] {
			why = append(why, fmt.Sprintf("the cluster holds %d of %s's %d", st.SAs[n.id], n.id, want[n.id]))
		}
	}
	return got, strings.Join(why, ", "), nil
}

func countEstablished(sas []ike.SAInfo) int {
	n := 0
	for _, sa := range sas {
		if sa.State == ike.StateEstablished.String() {
			n++
		}
	}
	return n
}

// startSwans starts the strongSwan clients, each towards its node's VIP,
// and has them initiate.
func (e *env) startSwans(ctx context.Context, psk string) error {
	daemons := make([]*swan.Daemon, len(e.clients))
	err := e.parallel(ctx, len(e.clients), func(i int) error {
		cl := e.clients[i]
		vip := swanTarget(e.cl.nodes, i+1).vip.Addr()
		id := fmt.Sprintf("c%d.swan.%s", i+1, domain)
		d, err := swan.Start(cl.ns, filepath.Join(e.dir, cl.name), swanConfig(i+1, vip, id, swanHAProposal, psk, e.o.DPD), swan.Options{LibIPsec: true})
		daemons[i] = d
		if err != nil {
			return fmt.Errorf("client %s: %w", cl.name, err)
		}
		if err := d.Initiate("net"); err != nil {
			return fmt.Errorf("client %s: %w", cl.name, err)
		}
		return nil
	})
	if ctx.Err() == nil {
		for i, d := range daemons {
			e.clients[i].swan = d
		}
	}
	return err
}

// replication sums what the nodes report: the leader's applied entries
// (every node applies the same ones) and the bytes all nodes sent.
func (e *env) replication(ctx context.Context) (Replication, error) {
	var rep Replication
	for _, n := range e.cl.voters() {
		st, err := e.status(ctx, n)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", n.id, err)
		}
		rep.Entries = max(rep.Entries, st.Replication.Entries)
		rep.SAPuts = max(rep.SAPuts, st.Replication.SAPuts)
		rep.SAMIDs = max(rep.SAMIDs, st.Replication.SAMIDs)
		rep.SADeletes = max(rep.SADeletes, st.Replication.SADeletes)
		rep.VIPMoves = max(rep.VIPMoves, st.Replication.VIPMoves)
		rep.TxBytes += st.Replication.TxBytes
	}
	return rep, nil
}

// nodeDPD sums the DPD requests the live nodes sent and saw answered.
func (e *env) nodeDPD(ctx context.Context) (sent, answered uint64, err error) {
	for _, n := range e.cl.nodes {
		if n.killed {
			continue
		}
		sas, err := e.list(ctx, n)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", n.id, err)
		}
		for _, sa := range sas {
			sent += uint64(sa.Stats.DPDSent)
			answered += uint64(sa.Stats.DPDAnswered)
		}
	}
	return sent, answered, nil
}

// steady lets DPD run with every SA up, and counts what the cluster
// replicated meanwhile: with RFC 6311 peers, DPD must cost no raft entry.
// strongSwan clients start pinging through their tunnels here and go on
// until the scenario is over.
func steady(ctx context.Context, e *env, r *Report) error {
	for i, cl := range e.clients {
		p, err := cl.ns.Start("ping "+cl.name, "", "ping", "-n", "-i", strconv.FormatFloat(pingInterval.Seconds(), 'f', -1, 64),
			"-W", "1", "-I", cl.inner.String(), gwInner.String())
		if err != nil {
			return fmt.Errorf("client %s: %w", cl.name, err)
		}
		e.cl.pings = append(e.cl.pings, p)
		r.Clients[i].Ping = Ping{From: cl.inner.String(), To: gwInner.String()}
	}
	before, err := e.replication(ctx)
	if err != nil {
		return err
	}
	sent0, ans0, err := e.nodeDPD(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := sleep(ctx, e.o.KillAfter); err != nil {
		return err
	}
	after, err := e.replication(ctx)
	if err != nil {
		return err
	}
	sent1, ans1, err := e.nodeDPD(ctx)
	if err != nil {
		return err
	}
	e.cl.beforeKill = after
	r.Failover.Steady = Steady{PeriodMS: time.Since(t0).Milliseconds(),
		NodeDPDSent: sent1 - sent0, NodeDPDAnswered: ans1 - ans0,
		Entries: after.Entries - before.Entries, SAPuts: after.SAPuts - before.SAPuts, SAMIDs: after.SAMIDs - before.SAMIDs,
		TxBytes: after.TxBytes - before.TxBytes}
	return nil
}

// pingInterval paces the strongSwan clients' pings: ten a second shows a
// gap of a tenth of a second.
const pingInterval = 100 * time.Millisecond

// killNode picks the node to kill (by default the one owning the most
// SAs), notes its SAs, and kills it
// as a machine dies: its link goes down and hike serve gets SIGKILL (the
// VIP a killed process leaves on the interface would otherwise still
// answer ARP, which no dead machine does).
func killNode(ctx context.Context, e *env, r *Report) error {
	c := e.cl
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		ids[i] = n.id
	}
	st, err := e.status(ctx, c.nodes[0])
	if err != nil {
		return err
	}
	victim := pickVictim(ids, r.Failover.SAsBefore, st.Leader, e.o.Kill)
	c.victim = c.nodes[slices.Index(ids, victim)]
	if c.victimSAs, err = e.list(ctx, c.victim); err != nil {
		return fmt.Errorf("%s: %w", victim, err)
	}
	f := r.Failover
	f.LeaderBefore = st.Leader // an election since the start would show here
	f.Killed, f.KilledVIP, f.KilledWasLeader = victim, c.victim.vip.Addr().String(), st.Leader == victim
	f.KilledSAs = len(c.victimSAs)
	for _, sa := range c.victimSAs {
		if sa.Extensions.MIDSync {
			f.KilledSAsRFC6311++
		}
	}
	role := "a follower"
	if f.KilledWasLeader {
		role = "the leader"
	}
	e.logf("%-10s %s (%s, %d SAs): link down, SIGKILL", "kill", victim, role, f.KilledSAs)
	// The link goes first: once hike is killed, the kernel tears down
	// its TUN device and routes, which holds the lock every link change
	// needs for a second or more. The process is not waited for either:
	// the survivors are watched from the moment of the kill.
	c.swanLogAt = make([]int, len(e.clients))
	for i, cl := range e.clients {
		c.swanLogAt[i] = len(cl.swan.Log())
	}
	c.killed = time.Now()
	c.victim.killed = true
	if _, err := c.victim.ns.Run("ip", "link", "set", clusterIf, "down"); err != nil {
		return err
	}
	if err := c.victim.proc.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	c.serving = e.watchServing(ctx)
	return nil
}

// servingWatch records, per survivor, when it reported itself not serving
// (no VIPs: cut off from a leader, or not yet caught up) after the kill.
type servingWatch struct {
	stop chan struct{}
	once sync.Once
	done chan struct{}
	gaps map[string]*Gap // written by the watcher until done closes
}

// watchServing polls the survivors' status from the kill until stopped.
func (e *env) watchServing(ctx context.Context) *servingWatch {
	w := &servingWatch{stop: make(chan struct{}), done: make(chan struct{}), gaps: map[string]*Gap{}}
	c := e.cl
	e.inflight.Add(1)
	go func() {
		defer e.inflight.Done()
		defer close(w.done)
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			for _, n := range c.nodes {
				if n.killed {
					continue
				}
				st, err := e.status(ctx, n)
				if err != nil || st.Serving {
					continue
				}
				since := time.Since(c.killed).Milliseconds()
				g := w.gaps[n.id]
				if g == nil {
					g = &Gap{FromMS: since}
					w.gaps[n.id] = g
				}
				g.ToMS = since
			}
			select {
			case <-t.C:
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return w
}

// end stops the watch and returns what it saw; it may be called again.
func (w *servingWatch) end() map[string]Gap {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	out := make(map[string]Gap, len(w.gaps))
	for id, g := range w.gaps {
		out[id] = *g
	}
	return out
}

// Which node the failover scenario kills (Options.Kill), besides a node ID.
const (
	KillBusiest  = "busiest"  // the node with the most SAs (default)
	KillLeader   = "leader"   // the raft leader
	KillFollower = "follower" // the follower with the most SAs
)

// pickVictim chooses the node to kill among ids: how is a node ID or one of
// the Kill constants ("" is KillBusiest); ties go to the first in ids.
func pickVictim(ids []string, sas map[string]int, leader, how string) string {
	switch how {
	case KillLeader:
		if slices.Contains(ids, leader) {
			return leader
		}
	case "", KillBusiest, KillFollower:
	default:
		if slices.Contains(ids, how) {
			return how
		}
	}
	best := ""
	for _, id := range ids {
		if how == KillFollower && id == leader {
			continue
		}
		if best == "" || sas[id] > sas[best] {
			best = id
		}
	}
	return best
}

// pollEvery paces the lab's polling of the survivors after the kill: the
// times it reports are this precise.
const pollEvery = 20 * time.Millisecond

// awaitTakeover polls the survivors until one of them owns the victim's
// VIP, and notes when the cluster had a leader again and saw the victim
// gone.
func awaitTakeover(ctx context.Context, e *env, r *Report) error {
	c, f := e.cl, r.Failover
	deadline := c.killed.Add(20 * time.Second)
	for {
		for _, n := range c.voters() {
			st, err := e.status(ctx, n)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			since := time.Since(c.killed).Milliseconds()
			if st.Leader != "" && st.Leader != c.victim.id && f.LeaderAfter == "" {
				f.LeaderAfter = st.Leader
				if f.KilledWasLeader {
					f.NewLeaderMS = since
				}
			}
			if st.Leader == n.id && f.DetectedMS == 0 {
				if m := st.member(c.victim.id); m != nil && !m.Reachable {
					f.DetectedMS = since
				}
			}
			if o := st.owner(c.victim.vip.Addr()); o != "" && o != c.victim.id {
				f.NewOwner, f.TakeoverMS = o, since
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("no survivor took the killed node's VIP over within 20s")
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// resyncWait bounds the wait for the last resync. It is no failure of the
// step: the check judges what was missing, after the clients had their say.
const resyncWait = 15 * time.Second

// awaitResync polls the new owner's SAs until every SA of the victim that
// negotiated RFC 6311 has completed its resynchronisation, or resyncWait
// has passed.
func awaitResync(ctx context.Context, e *env, r *Report) error {
	c, f := e.cl, r.Failover
	owner := c.nodes[slices.IndexFunc(c.nodes, func(n *node) bool { return n.id == f.NewOwner })]
	deadline := time.Now().Add(resyncWait)
	for {
		sas, err := e.list(ctx, owner)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", owner.id, err)
		}
		since := time.Since(c.killed).Milliseconds()
		p := takenOver(c.victimSAs, sas)
		if p.restored > 0 && f.RestoredMS == 0 {
			f.RestoredMS = since
		}
		if p.resynced > 0 && f.FirstResyncMS == 0 {
			f.FirstResyncMS = since
		}
		if p.resynced > f.Resynced {
			f.LastResyncMS = since
		}
		f.Restored, f.Resynced, f.Behind = p.restored, p.resynced, p.behind
		if p.resynced >= f.KilledSAsRFC6311 && p.restored == f.KilledSAs {
			return nil
		}
		if time.Now().After(deadline) {
			e.logf("%-10s after %s %s has restored %d and resynchronised %d of the %d SAs (%d with RFC 6311)",
				"resync", resyncWait, owner.id, p.restored, p.resynced, f.KilledSAs, f.KilledSAsRFC6311)
			return nil
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// progress is how far the new owner got with the victim's SAs; behind
// names the peers (by identity) of SAs not restored, or negotiated with RFC
// 6311 and not yet resynchronised.
type progress struct {
	restored, resynced int
	behind             []string
}

// takenOver counts how many of the victim's SAs the new owner lists, and
// how many of those completed an RFC 6311 sync there: a restored SA starts
// with zero counters, and its last sync's outcome is recorded only when the
// peer answered.
func takenOver(victim, owner []ike.SAInfo) progress {
	type key struct{ i, r string }
	have := make(map[key]ike.SAInfo, len(owner))
	for _, sa := range owner {
		have[key{strings.ToLower(sa.SPIi), strings.ToLower(sa.SPIr)}] = sa
	}
	var p progress
	for _, v := range victim {
		sa, ok := have[key{strings.ToLower(v.SPIi), strings.ToLower(v.SPIr)}]
		switch {
		case !ok:
		case sa.Stats.LastSyncAfter != [2]uint32{}:
			p.restored++
			p.resynced++
			continue
		default:
			p.restored++
			if !v.Extensions.MIDSync {
				continue
			}
		}
		who := v.PeerID
		if who == "" {
			who = v.SPIi + "/" + v.SPIr
		}
		p.behind = append(p.behind, who)
	}
	slices.Sort(p.behind)
	return p
}

// observe lets DPD run on the survivors for two DPD delays, then ends the
// clients and collects what they saw.
func observe(ctx context.Context, e *env, r *Report) error {
	if err := sleep(ctx, 2*e.o.DPD+time.Second); err != nil {
		return err
	}
	c, f := e.cl, r.Failover
	if c.serving != nil {
		f.NotServing = c.serving.end()
	}
	for _, g := range c.groups {
		g.proc.Signal(syscall.SIGINT)
	}
	for i, p := range c.pings {
		p.Signal(syscall.SIGINT)
		p.Wait()
		parsePing(p.Out.String(), &r.Clients[i].Ping)
		r.Clients[i].Ping.LongestGapMS = longestGap(p.Out.String(), pingInterval)
	}
	var errs []error
	for _, g := range c.groups {
		done := make(chan struct{})
		go func() { g.proc.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("hike load %d did not end within 10s of SIGINT", g.i))
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		s, err := parseLoadSummary(g.proc.Out.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("hike load %d: %w", g.i, err))
			continue
		}
		f.Clients = append(f.Clients, loadResult(g, s))
	}
	// The counters of the survivors' shared log: entries every node
	// applied alike; bytes are left out, the killed node's share of the
	// earlier sum being gone.
	if rep, err := e.replication(ctx); err == nil {
		b := c.beforeKill
		f.Replicated = Replicated{Entries: rep.Entries - b.Entries, SAPuts: rep.SAPuts - b.SAPuts,
			SADeletes: rep.SADeletes - b.SADeletes, VIPMoves: rep.VIPMoves - b.VIPMoves}
	} else {
		errs = append(errs, err)
	}
	f.SAsAfter = map[string]int{}
	for _, n := range c.nodes {
		if n.killed {
			continue
		}
		sas, err := e.list(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.id, err))
			continue
		}
		f.SAsAfter[n.id] = countEstablished(sas)
	}
	if st := e.leaderStatus(ctx); st != nil {
		f.ClusterSAsAfter = st.SAs
	}
	if len(e.clients) > 0 {
		before := make([]IKESA, len(r.Clients))
		for i := range r.Clients {
			before[i] = r.Clients[i].IKE
		}
		// A client whose SA died is the check's to judge, not a failure
		// of the lab.
		if err := e.readSAs(ctx, r); err != nil && !onlyNoSA(err) {
			errs = append(errs, err)
		}
		for i := range r.Clients {
			cl := &r.Clients[i]
			cl.DPD.SameIKESA = cl.IKE.SPIi != "" && cl.IKE.SPIi == before[i].SPIi && cl.IKE.SPIr == before[i].SPIr
			// Only what happened after the kill: DPD must go on with
			// the node that took over.
			log := e.clients[i].swan.Log()
			if off := c.swanLogAt[i]; off <= len(log) {
				log = log[off:]
			}
			parseDPD(log, &cl.DPD)
			cl.DPD.PeriodMS = time.Since(c.killed).Milliseconds()
		}
	}
	return errors.Join(errs...)
}

// onlyNoSA reports whether every error joined in err is errNoSA.
func onlyNoSA(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyNoSA(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, errNoSA)
}

func loadResult(g *loadGroup, s *loadgen.Summary) LoadClients {
	return LoadClients{Group: fmt.Sprintf("l%d", g.i), Namespace: g.ns.Name, VIP: g.target.vip.Addr().String(), Node: g.target.id,
		Clients: s.Clients, Established: s.Established, Failed: s.Failed, Pending: s.Pending, UpAtEnd: s.UpAtEnd,
		Failures: s.Failures, DPDSent: s.DPD.Sent, DPDCompleted: s.DPD.Completed, DPDTimeouts: s.DPD.Timeouts,
		ResyncsSeen: s.ResyncsSeen, Retransmits: s.Retransmits}
}

// parseLoadSummary finds `hike load --json`'s summary at the end of its
// output (anything it logged comes before): the one object that starts a
// line.
func parseLoadSummary(out string) (*loadgen.Summary, error) {
	i := strings.LastIndex("\n"+out, "\n{\n")
	if i < 0 {
		return nil, fmt.Errorf("no summary in its output: %s", lastLines(out, 5))
	}
	var s loadgen.Summary
	if err := json.Unmarshal([]byte(out[i:]), &s); err != nil {
		return nil, fmt.Errorf("its summary does not parse: %v", err)
	}
	return &s, nil
}

// checkFailover judges the run from the report.
func checkFailover(ctx context.Context, e *env, r *Report) error {
	judgeFailover(r, e.o)
	if p := r.Failover.Problems; len(p) > 0 {
		return fmt.Errorf("%d problem%s: see the report", len(p), plural(len(p)))
	}
	return nil
}
