package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFailoverWithoutRFC6311: 30 simulated clients that do not advertise
// RFC 6311, probing every second, spread over the three VIPs; the node
// that owns the most SAs is SIGKILLed. What the design promises for such
// peers: the successor restores their SAs with the replicated Message IDs
// (at most 100 ms stale, and it accepts the one exchange its predecessor
// may have done since), sends them no sync, and their DPD goes on without
// a timeout: every SA survives.
func TestFailoverWithoutRFC6311(t *testing.T) {
	e := newCluster(t)
	const perVIP = 10
	groups := map[int]*loadGroup{}
	for k := 1; k <= nodes; k++ {
		g, err := e.addLoad(k, vipOf(k), perVIP, false, "1")
		if err != nil {
			t.Fatal(err)
		}
		groups[k] = g
	}
	if err := e.waitListed(30*time.Second, nodes*perVIP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	victim, load, err := e.mostLoaded()
	if err != nil {
		t.Fatal(err)
	}
	killAt := e.kill(victim)
	taker := 0
	if err := e.waitCond(10*time.Second, "a survivor to add the killed node's VIP", func() error {
		h, err := e.holder(vipOf(victim))
		if err != nil {
			return err
		}
		if h == 0 {
			return fmt.Errorf("nobody has %s", vipOf(victim))
		}
		taker = h
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	vipMoved := time.Since(killAt)
	if err := e.waitListed(15*time.Second, nodes*perVIP); err != nil {
		t.Fatal(err)
	}
	listed := time.Since(killAt)
	t.Logf("SAs per node %v; node%d killed: VIP on node%d after %v, every SA listed after %v",
		load, victim, taker, vipMoved.Round(time.Millisecond), listed.Round(time.Millisecond))

	sas, err := e.saList(taker)
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		if sa.Extensions.MIDSync {
			t.Errorf("SA %s on node%d negotiated RFC 6311 with a client that did not advertise it", sa.ID, taker)
		}
	}
	if err := loadProgress(e, taker, groups[victim], 3*time.Second); err != nil {
		t.Error(err)
	}
	time.Sleep(2 * time.Second)
	for k := 1; k <= nodes; k++ {
		s, err := groups[k].stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("load group %d (VIP %s%s): established %d, up at end %d, DPD sent %d completed %d failed %d timeouts %d, retransmits %d, resyncs seen %d",
			k, vipOf(k), map[bool]string{true: ", moved"}[k == victim], s.Established, s.UpAtEnd, s.DPD.Sent,
			s.DPD.Completed, s.DPD.Failed, s.DPD.Timeouts, s.Retransmits, s.ResyncsSeen)
		if s.Established != perVIP || s.UpAtEnd != perVIP || s.DPD.Failed != 0 || s.DPD.Timeouts != 0 || s.ResyncsSeen != 0 {
			t.Errorf("load group %d: %+v", k, *s)
		}
	}
	if strings.Contains(e.nodes[taker].proc.Out.String(), "sync complete") {
		t.Errorf("node%d ran an RFC 6311 sync with peers that did not negotiate it", taker)
	}
}
