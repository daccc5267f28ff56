package cluster

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPartition cuts the leader's link (link down in its namespace). The
// isolated node must stop serving its VIP within about a second, before
// the majority takes it (no VIP is ever on two running nodes), the
// majority keeps its own VIPs and takes the isolated one over with its
// SAs, and once the link is back the node rejoins, gives up its stale
// copies of the moved SAs and takes nothing back by itself.
func TestPartition(t *testing.T) {
	e := newCluster(t)
	const perVIP = 5
	for k := 1; k <= nodes; k++ {
		if _, err := e.addLoad(k, vipOf(k), perVIP, true, "2"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.waitListed(30*time.Second, nodes*perVIP); err != nil {
		t.Fatal(err)
	}
	st, err := e.status(1)
	if err != nil {
		t.Fatal(err)
	}
	iso := 0
	for i := 1; i <= nodes; i++ {
		if nodeID(i) == st.Leader {
			iso = i
		}
	}
	if iso == 0 {
		t.Fatalf("no leader: %+v", st)
	}
	vip := vipOf(iso)

	// Sample every node's addresses from before the cut to the end. The
	// majority is not cut off, but its followers cannot tell a dead leader
	// from their own isolation until they elect a new one, and stop
	// serving meanwhile: that gap must stay within the 3 s in which
	// traffic has to resume after a failure.
	keep := map[int]netip.Addr{}
	for i := 1; i <= nodes; i++ {
		if i != iso {
			keep[i] = vipOf(i)
		}
	}
	w := newVIPWatch(e, keep)
	defer w.stop()
	time.Sleep(300 * time.Millisecond)
	cutAt := time.Now()
	if out, err := e.nodes[iso].ns.Run("ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatalf("link down: %v %s", err, out)
	}
	var dropped, taken time.Duration
	taker := 0
	if err := e.waitCond(5*time.Second, fmt.Sprintf("node%d to drop its VIP", iso), func() error {
		if err := e.servesOnly(iso); err != nil {
			return err
		}
		dropped = time.Since(cutAt)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.waitCond(10*time.Second, "the majority to take the VIP", func() error {
		for i := 1; i <= nodes; i++ {
			if i == iso {
				continue
			}
			if vips, err := e.vipsIn(i); err == nil && containsAddr(vips, vip) {
				taker, taken = i, time.Since(cutAt)
				return nil
			}
		}
		return fmt.Errorf("no majority node has %s", vip)
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("leader node%d cut off: dropped its VIP after %v; node%d added it after %v",
		iso, dropped.Round(time.Millisecond), taker, taken.Round(time.Millisecond))
	if dropped > 1500*time.Millisecond {
		t.Errorf("the isolated node served its VIP for %v after the cut", dropped.Round(time.Millisecond))
	}
	// The majority's view: a new leader, the VIP owned by the taker, the
	// isolated node's SAs listed there.
	if err := e.waitCond(10*time.Second, "the majority's status", func() error {
		s, err := e.status(taker)
		if err != nil {
			return err
		}
		if s.Leader == "" || s.Leader == nodeID(iso) {
			return fmt.Errorf("leader %q", s.Leader)
		}
		if o := s.owner(vip); o != nodeID(taker) {
			return fmt.Errorf("owner of %s is %q", vip, o)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s, err := e.status(iso); err != nil {
		t.Error(err)
	} else if s.Serving {
		t.Errorf("the isolated node says it is serving: %+v", s)
	}
	// The majority lists every SA once, the isolated node's on the taker,
	// answering DPD. The isolated node may keep its copies while it knows
	// nothing (it serves no address for them); it drops them once back.
	var majority []int
	for i := 1; i <= nodes; i++ {
		if i != iso {
			majority = append(majority, i)
		}
	}
	if err := e.waitListedOn(majority, 10*time.Second, nodes*perVIP); err != nil {
		t.Fatal(err)
	}
	if err := loadProgress(e, taker, e.loads[iso-1], 3*time.Second); err != nil {
		t.Error(err)
	}

	healAt := time.Now()
	if out, err := e.nodes[iso].ns.Run("ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatalf("link up: %v %s", err, out)
	}
	if err := e.waitCond(15*time.Second, fmt.Sprintf("node%d to rejoin", iso), func() error {
		s, err := e.status(iso)
		if err != nil {
			return err
		}
		if s.Leader == "" {
			return fmt.Errorf("node%d knows no leader", iso)
		}
		if !s.Serving {
			return fmt.Errorf("node%d not serving", iso)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("link back: node%d rejoined after %v", iso, time.Since(healAt).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	// Rejoining gives nothing back by itself: handback is explicit.
	if err := e.servesOnly(iso); err != nil {
		t.Error(err)
	}
	if err := e.waitListed(5*time.Second, nodes*perVIP); err != nil {
		t.Error(err)
	}
	if err := w.stop(); err != nil {
		t.Error(err)
	}
	var gaps []string
	for i, g := range w.gaps {
		gaps = append(gaps, fmt.Sprintf("node%d %v", i, g[1].Sub(g[0]).Round(time.Millisecond)))
	}
	t.Logf("%d samples of every node's VIPs; the majority's own VIPs were down (between samples ~%v apart) for: %v",
		w.samples, w.interval(), gaps)
	for _, g := range e.loads {
		s, err := g.stop()
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("load group %d: up at end %d of %d, DPD timeouts %d, resyncs seen %d", g.k, s.UpAtEnd, g.clients, s.DPD.Timeouts, s.ResyncsSeen)
		if s.UpAtEnd != int64(g.clients) || s.DPD.Timeouts != 0 {
			t.Errorf("load group %d lost SAs: %+v", g.k, *s)
		}
		// The moved SAs were resynchronised by the taker, once each.
		if moved := g.vip == vip; moved && s.ResyncsSeen < uint64(g.clients) || !moved && s.ResyncsSeen != 0 {
			t.Errorf("load group %d (VIP %s, moved %v) saw %d RFC 6311 resyncs", g.k, g.vip, moved, s.ResyncsSeen)
		}
	}
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// vipWatch samples the VIPs of every running node until stopped and
// remembers any VIP seen on two nodes in one sample, and any sample in
// which a node of keep did not have its VIP.
type vipWatch struct {
	e       *env
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	samples int
	errs    []string
	gaps    map[int][2]time.Time // first and last sample without its VIP
	first   time.Time
	last    time.Time
}

func newVIPWatch(e *env, keep map[int]netip.Addr) *vipWatch {
	w := &vipWatch{e: e, done: make(chan struct{}), gaps: map[int][2]time.Time{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.done:
				return
			default:
			}
			seen := map[netip.Addr][]int{}
			for _, i := range e.alive() {
				vips, err := e.vipsIn(i)
				for _, v := range vips {
					seen[v] = append(seen[v], i)
				}
				if v, ok := keep[i]; ok && err == nil && !containsAddr(vips, v) {
					g := w.gaps[i]
					if g[0].IsZero() {
						g[0] = time.Now()
					}
					g[1] = time.Now()
					w.gaps[i] = g
				}
			}
			for v, ns := range seen {
				if len(ns) > 1 && len(w.errs) < 10 {
					w.errs = append(w.errs, fmt.Sprintf("%s: VIP %s on nodes %v", time.Now().Format("15:04:05.000"), v, ns))
				}
			}
			if w.samples == 0 {
				w.first = time.Now()
			}
			w.last = time.Now()
			w.samples++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// interval is the mean time between samples.
func (w *vipWatch) interval() time.Duration {
	if w.samples < 2 {
		return 0
	}
	return (w.last.Sub(w.first) / time.Duration(w.samples-1)).Round(time.Millisecond)
}

func (w *vipWatch) stop() error {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
	errs := w.errs
	for i, g := range w.gaps {
		if d := g[1].Sub(g[0]); d > 3*time.Second {
			errs = append(errs, fmt.Sprintf("node%d did not serve its own VIP for %v, from %s (in the majority)",
				i, d.Round(time.Millisecond), g[0].Format("15:04:05.000")))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("VIPs served twice or dropped:\n%s", strings.Join(errs, "\n"))
	}
	return nil
}
