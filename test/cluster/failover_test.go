package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The strongSwan scenario is built once and shared, because the rejoin
// test is what happens next to the same cluster: TestFailoverStrongSwan
// asserts the takeover, TestRejoinHandback the return of the killed node.
// Either builds and fails the cluster over if it runs alone.
const (
	swanClients  = 51 // 17 per VIP
	loadsPerVIP  = 10
	steadyBefore = 3 * time.Second
)

type failover struct {
	e      *env
	err    error
	killed int
	killAt time.Time
	taker  int // the node that took the killed node's VIP

	before     map[saKey][]int // nodes listing each SA before the kill
	clientSAs  map[int]saKey   // each charon's SA before the kill
	inits      map[int]int     // IKE_SA_INITs each charon sent before the kill
	logAt      map[int]int     // each charon's log length right after the kill
	vipMoved   time.Duration   // kill -> VIP on the taker's interface
	allListed  time.Duration   // kill -> every SA listed by the survivors
	syncSeen   time.Duration   // kill -> last moved charon saw MSG_ID_SYN
	moved      []*client       // charons whose VIP moved
	loadsMoved *loadGroup
}

var shared struct {
	once   sync.Once
	f      *failover
	failed bool // a test on it failed: keep the logs
}

// closeShared removes the shared cluster; TestMain calls it.
func closeShared() {
	if shared.f != nil {
		shared.f.e.close(shared.failed)
	}
}

// failedOver returns the shared cluster after its most loaded node was
// killed and a survivor took over, building it on first use.
func failedOver(t *testing.T) *failover {
	t.Helper()
	requireSwan(t)
	shared.once.Do(func() {
		f := &failover{}
		shared.f = f
		f.err = f.run(t)
	})
	f := shared.f
	t.Cleanup(func() {
		if t.Failed() {
			shared.failed = true
		}
	})
	if f.err != nil {
		if f.e != nil {
			f.e.dump(t)
		}
		t.Fatalf("shared failover scenario: %v", f.err)
	}
	return f
}

func (f *failover) run(t *testing.T) error {
	start := time.Now()
	e, err := newEnv(t)
	f.e = e
	if err != nil {
		return err
	}
	if err := e.startCluster(); err != nil {
		return err
	}
	tCluster := time.Since(start)
	mark := time.Now()
	if err := e.addClients(swanClients); err != nil {
		return err
	}
	for k := 1; k <= nodes; k++ {
		if _, err := e.addLoad(k, vipOf(k), loadsPerVIP, true, "2"); err != nil {
			return err
		}
	}
	if err := e.initiate(); err != nil {
		return err
	}
	want := swanClients + nodes*loadsPerVIP
	if err := e.waitCond(30*time.Second, "every SA listed once", func() error {
		l, err := e.listed()
		if err != nil {
			return err
		}
		if len(l) != want {
			return fmt.Errorf("%d SAs listed, want %d", len(l), want)
		}
		return nil
	}); err != nil {
		return err
	}
	tSetup := time.Since(mark)
	f.clientSAs, f.inits = map[int]saKey{}, map[int]int{}
	for _, c := range e.clients {
		sa, err := c.sa()
		if err != nil {
			return err
		}
		f.clientSAs[c.j] = c.key(sa)
		if err := c.startPing(); err != nil {
			return err
		}
	}
	time.Sleep(steadyBefore)
	for _, c := range e.clients {
		if !strings.Contains(c.ping.Out.String(), "bytes from") {
			return fmt.Errorf("client %d: no ping answered through the tunnel before the kill:\n%s", c.j, c.ping.Out.String())
		}
	}

	// The node that owns the most SAs dies. The VIPs carry equal numbers
	// of clients, so this is whichever lists the most right now.
	if f.before, err = e.listed(); err != nil {
		return err
	}
	load := map[int]int{}
	for _, ns := range f.before {
		if len(ns) != 1 {
			return fmt.Errorf("an SA is listed by nodes %v before the kill", ns)
		}
		load[ns[0]]++
	}
	for i := 1; i <= nodes; i++ {
		if f.killed == 0 || load[i] > load[f.killed] {
			f.killed = i
		}
	}
	for _, c := range e.clients {
		f.inits[c.j] = c.initCount()
		if c.vip == vipOf(f.killed) {
			f.moved = append(f.moved, c)
		}
	}
	for _, g := range e.loads {
		if g.vip == vipOf(f.killed) {
			f.loadsMoved = g
		}
	}
	leader := "?"
	if s, err := e.status(f.killed); err == nil {
		leader = s.Leader
	}
	t.Logf("setup: cluster %v, %d charons + %d simulated clients established in %v; SAs per node %v; killing node%d (leader: %s)",
		tCluster.Round(time.Millisecond), swanClients, nodes*loadsPerVIP, tSetup.Round(time.Millisecond), load, f.killed, leader)

	f.killAt = e.kill(f.killed)
	f.logAt = map[int]int{}
	for _, c := range e.clients {
		f.logAt[c.j] = len(c.swan.Log())
	}
	killedVIP := vipOf(f.killed)
	if err := e.waitCond(10*time.Second, "a survivor to add the killed node's VIP", func() error {
		for _, i := range e.alive() {
			vips, err := e.vipsIn(i)
			if err != nil {
				return err
			}
			for _, v := range vips {
				if v == killedVIP {
					f.taker = i
					return nil
				}
			}
		}
		return fmt.Errorf("no survivor has %s", killedVIP)
	}); err != nil {
		return err
	}
	f.vipMoved = time.Since(f.killAt)
	if err := e.waitCond(15*time.Second, "the survivors to list every SA", func() error {
		l, err := e.listed()
		if err != nil {
			return err
		}
		for k := range f.before {
			if len(l[k]) == 0 {
				return fmt.Errorf("SA %s/%s is listed by no survivor", k.spiI, k.spiR)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	f.allListed = time.Since(f.killAt)
	if err := e.waitCond(15*time.Second, "every moved charon to see the RFC 6311 sync", func() error {
		for _, c := range f.moved {
			if !strings.Contains(c.swan.Log()[f.logAt[c.j]:], "MSG_ID_SYN") {
				return fmt.Errorf("client %d saw no sync", c.j)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	f.syncSeen = time.Since(f.killAt)
	return nil
}

// TestFailoverStrongSwan: three nodes, 51 strongSwan clients and 30
// simulated ones spread over the three VIPs, DPD both ways; the node that
// owns the most SAs is SIGKILLed. Every strongSwan IKE SA survives with
// its SPIs and without a new IKE_SA_INIT, it was resynchronised with
// RFC 6311, DPD runs both ways through the new owner, pings through every
// tunnel resume within 3 s, and the survivors list every SA exactly once.
func TestFailoverStrongSwan(t *testing.T) {
	f := failedOver(t)
	e := f.e
	t.Cleanup(func() {
		if t.Failed() {
			e.dump(t)
			for _, c := range f.moved[:min(2, len(f.moved))] {
				t.Logf("charon %d log since the kill:\n%s", c.j, tailLines(c.swan.Log()[f.logAt[c.j]:], 30))
			}
		}
	})
	t.Logf("node%d killed: VIP %s on node%d after %v, every SA listed after %v, every moved charon synced after %v",
		f.killed, vipOf(f.killed), f.taker, f.vipMoved.Round(time.Millisecond), f.allListed.Round(time.Millisecond),
		f.syncSeen.Round(time.Millisecond))

	// Traffic first: pings through every tunnel until 4 s after the kill.
	time.Sleep(time.Until(f.killAt.Add(4 * time.Second)))
	end := time.Now()
	var errs []string
	var movedGaps, otherGaps []time.Duration
	var worstFirst time.Duration
	for _, c := range e.clients {
		g := outage(c.stopPing(), f.killAt, end)
		if c.vip == vipOf(f.killed) {
			movedGaps = append(movedGaps, g.longest)
			worstFirst = max(worstFirst, g.first)
		} else {
			otherGaps = append(otherGaps, g.longest)
		}
		if b := g.broken(); b != "" {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s): after the kill: %s", c.j, c.vip, b))
		}
	}
	// Then DPD: strongSwan counts ESP as a sign of life, so the clients
	// that probe (every second) do so only once the pings have stopped;
	// hike counts only IKE and probes every 2 s throughout.
	time.Sleep(3 * time.Second)
	for _, c := range e.clients {
		sa, err := c.sa()
		switch {
		case err != nil:
			errs = append(errs, err.Error())
			continue
		case c.key(sa) != f.clientSAs[c.j]:
			errs = append(errs, fmt.Sprintf("client %d: IKE SA %s/%s, was %s/%s", c.j, sa.SPIi, sa.SPIr,
				f.clientSAs[c.j].spiI, f.clientSAs[c.j].spiR))
		}
		if n := c.initCount(); n != f.inits[c.j] {
			errs = append(errs, fmt.Sprintf("client %d: %d IKE_SA_INIT requests, %d before the kill", c.j, n, f.inits[c.j]))
		}
		fromHike, answered := c.dpdSince(f.logAt[c.j])
		if c.dpd < 2*time.Second && answered == 0 {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s): none of its DPD requests answered after the kill", c.j, c.vip))
		}
		if c.dpd > 2*time.Second && fromHike == 0 {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s): no DPD request from hike after the kill", c.j, c.vip))
		}
		// The survivors' own SAs never left them: nothing to resync.
		if c.vip != vipOf(f.killed) && strings.Contains(c.swan.Log()[f.logAt[c.j]:], "MSG_ID_SYN") {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s, not moved): resynchronised although its node did not fail", c.j, c.vip))
		}
	}

	l, err := e.listed()
	if err != nil {
		t.Fatal(err)
	}
	for k := range f.before {
		if n := len(l[k]); n != 1 {
			errs = append(errs, fmt.Sprintf("SA %s/%s listed by %d survivors %v", k.spiI, k.spiR, n, l[k]))
		}
	}
	// The simulated clients of the killed node keep probing through the
	// taker: it answers, so their next Message ID rises.
	if g := f.loadsMoved; g != nil {
		if err := loadProgress(e, f.taker, g, 3*time.Second); err != nil {
			errs = append(errs, err.Error())
		}
	}
	sort.Slice(movedGaps, func(a, b int) bool { return movedGaps[a] < movedGaps[b] })
	sort.Slice(otherGaps, func(a, b int) bool { return otherGaps[a] < otherGaps[b] })
	t.Logf("pings of the %d moved tunnels: longest gap median %v max %v, first reply at most %v after the kill; other tunnels: max gap %v",
		len(movedGaps), pct(movedGaps, 50), pct(movedGaps, 100), worstFirst.Round(time.Millisecond), pct(otherGaps, 100))
	if len(errs) > 0 {
		if len(errs) > 15 {
			errs = append(errs[:15], fmt.Sprintf("... and %d more", len(errs)-15))
		}
		t.Fatalf("after the failover:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("taker's log:\n%s", tailLines(grepLines(e.nodes[f.taker].proc.Out.String(), "cluster:", "RFC 6311", "restored"), 10))
}

// loadProgress checks that the SAs of group g on node i answer the
// group's DPD: their next expected Message ID rises within d.
func loadProgress(e *env, i int, g *loadGroup, d time.Duration) error {
	mids := func() (map[string]uint32, error) {
		sas, err := e.saList(i)
		if err != nil {
			return nil, err
		}
		m := map[string]uint32{}
		for _, sa := range sas {
			if remoteIn(sa.Remote, loadNet(g.k)) {
				m[sa.SPIr] = sa.NextRecvMID
			}
		}
		return m, nil
	}
	a, err := mids()
	if err != nil {
		return err
	}
	if len(a) != g.clients {
		return fmt.Errorf("node%d lists %d SAs of load group %d, want %d", i, len(a), g.k, g.clients)
	}
	time.Sleep(d)
	b, err := mids()
	if err != nil {
		return err
	}
	stuck := 0
	for spi, m := range a {
		if b[spi] <= m {
			stuck++
		}
	}
	if stuck > 0 {
		return fmt.Errorf("node%d: %d of %d SAs of load group %d answered no DPD in %v", i, stuck, len(a), g.k, d)
	}
	return nil
}

func remoteIn(remote string, p netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, err := netip.ParseAddr(remote)
		return err == nil && p.Contains(a)
	}
	return p.Contains(ap.Addr().Unmap())
}

// pct returns the p-th percentile of sorted ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[(len(ds)-1)*p/100].Round(time.Millisecond)
}
