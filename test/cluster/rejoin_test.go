package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRejoinHandback continues the shared failover: the killed node
// starts again from its data directory, rejoins and catches up, serves no
// VIP until `hike cluster handback` moves its own back, and no SA is lost
// on the way: the strongSwan clients keep their SPIs without a new
// IKE_SA_INIT, DPD goes on both ways, and the survivors plus the returned
// node list every SA exactly once.
func TestRejoinHandback(t *testing.T) {
	f := failedOver(t)
	e := f.e
	t.Cleanup(func() {
		if t.Failed() {
			e.dump(t)
		}
	})
	back := f.killed
	mark := time.Now()
	if err := e.start(back); err != nil {
		t.Fatal(err)
	}
	var lag int64
	if err := e.waitCond(20*time.Second, fmt.Sprintf("node%d to rejoin and catch up", back), func() error {
		s, err := e.status(back)
		if err != nil {
			return err
		}
		leader := e.index(s.Leader)
		if leader == 0 {
			return fmt.Errorf("node%d knows no leader", back)
		}
		// Only the leader hears from every member.
		ls, err := e.status(leader)
		if err != nil {
			return err
		}
		for _, m := range ls.Members {
			if !m.Reachable {
				return fmt.Errorf("leader node%d sees %s unreachable", leader, m.ID)
			}
		}
		lag = int64(ls.AppliedIndex) - int64(s.AppliedIndex)
		if lag > 5 || lag < -5 {
			return fmt.Errorf("node%d applied %d, leader node%d %d", back, s.AppliedIndex, leader, ls.AppliedIndex)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("node%d restarted, rejoined and caught up (applied index within %d of the leader's) after %v",
		back, lag, time.Since(mark).Round(time.Millisecond))
	if err := e.servesOnly(back); err != nil {
		t.Fatalf("before the handback: %v", err)
	}

	before, err := e.listed()
	if err != nil {
		t.Fatal(err)
	}
	logAt := map[int]int{}
	for _, c := range e.clients {
		logAt[c.j] = len(c.swan.Log())
		if err := c.startPing(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)

	// Watch the VIP while it moves: never on two nodes at once.
	vip := vipOf(back)
	stop := make(chan struct{})
	twice := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(twice)
				return
			default:
			}
			if hs, err := e.holders(vip); err == nil && len(hs) > 1 {
				twice <- fmt.Errorf("VIP %s on nodes %v at once", vip, hs)
				close(twice)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	handAt := time.Now()
	if out, err := e.hikeCmd(back, "cluster", "handback"); err != nil {
		close(stop)
		t.Fatalf("hike cluster handback: %v\n%s", err, out)
	}
	if err := e.waitCond(10*time.Second, fmt.Sprintf("node%d to serve %s again", back, vip), func() error {
		if err := e.servesOnly(back, vip); err != nil {
			return err
		}
		return e.servesOnly(f.taker, vipOf(f.taker))
	}); err != nil {
		close(stop)
		t.Fatal(err)
	}
	vipBack := time.Since(handAt)
	if err := e.waitListed(10*time.Second, len(f.before)); err != nil {
		close(stop)
		t.Fatal(err)
	}
	listedBack := time.Since(handAt)
	time.Sleep(time.Until(handAt.Add(4 * time.Second)))
	close(stop)
	if err := <-twice; err != nil {
		t.Errorf("during the handback: %v", err)
	}
	end := time.Now()
	t.Logf("handback: VIP %s on node%d again after %v, its SAs listed there after %v",
		vip, back, vipBack.Round(time.Millisecond), listedBack.Round(time.Millisecond))

	var errs []string
	after, err := e.listed()
	if err != nil {
		t.Fatal(err)
	}
	onBack := 0
	for k := range before {
		if len(after[k]) != 1 {
			errs = append(errs, fmt.Sprintf("SA %s/%s listed by %v", k.spiI, k.spiR, after[k]))
		} else if after[k][0] == back {
			onBack++
		}
	}
	var worst time.Duration
	for _, c := range e.clients {
		g := outage(c.stopPing(), handAt, end)
		worst = max(worst, g.longest)
		if b := g.broken(); b != "" {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s): after the handback: %s", c.j, c.vip, b))
		}
	}
	// strongSwan counts ESP as a sign of life: the clients that probe do
	// so only once the pings have stopped.
	time.Sleep(3 * time.Second)
	for _, c := range e.clients {
		sa, err := c.sa()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if c.key(sa) != f.clientSAs[c.j] {
			errs = append(errs, fmt.Sprintf("client %d: IKE SA %s/%s, was %s/%s", c.j, sa.SPIi, sa.SPIr, f.clientSAs[c.j].spiI, f.clientSAs[c.j].spiR))
		}
		if n := c.initCount(); n != f.inits[c.j] {
			errs = append(errs, fmt.Sprintf("client %d: %d IKE_SA_INIT requests, %d before the failover", c.j, n, f.inits[c.j]))
		}
		if c.vip == vip {
			if after[c.key(sa)] == nil || after[c.key(sa)][0] != back {
				errs = append(errs, fmt.Sprintf("client %d: its SA is not on node%d after the handback", c.j, back))
			}
		}
		fromHike, answered := c.dpdSince(logAt[c.j])
		if c.dpd < 2*time.Second && answered == 0 {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s): none of its DPD requests answered after the handback", c.j, c.vip))
		}
		if c.dpd > 2*time.Second && fromHike == 0 {
			errs = append(errs, fmt.Sprintf("client %d (VIP %s): no DPD request from hike after the handback", c.j, c.vip))
		}
	}
	if g := f.loadsMoved; g != nil {
		if err := loadProgress(e, back, g, 3*time.Second); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, g := range e.loads {
		s, err := g.stop()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		t.Logf("load group %d: established %d, up at end %d, DPD completed %d failed %d timeouts %d, resyncs seen %d",
			g.k, s.Established, s.UpAtEnd, s.DPD.Completed, s.DPD.Failed, s.DPD.Timeouts, s.ResyncsSeen)
		if s.UpAtEnd != int64(g.clients) || s.DPD.Timeouts != 0 {
			errs = append(errs, fmt.Sprintf("load group %d: %d of %d SAs up at the end, %d DPD timeouts", g.k, s.UpAtEnd, g.clients, s.DPD.Timeouts))
		}
	}
	t.Logf("after the handback node%d lists %d SAs; longest ping gap over all tunnels %v", back, onBack, worst.Round(time.Millisecond))
	if len(errs) > 0 {
		if len(errs) > 15 {
			errs = append(errs[:15], fmt.Sprintf("... and %d more", len(errs)-15))
		}
		t.Fatalf("after the handback:\n%s", strings.Join(errs, "\n"))
	}
}
