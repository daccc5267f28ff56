package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// The pair: node1 and node2 concentrate, node3 runs `hike witness`.
const (
	witnessNode      = 3
	pairLoadsPerVIP  = 10
	pairCharonsPerIP = 2
	// Takeover of a dead leader: its followers notice in 0.5-1 s
	// (heartbeat_timeout, randomised), elect, and the new leader moves the
	// VIPs FailAfter (1 s) after its last contact with the old one.
	pairTakeover = 2500 * time.Millisecond
	// Losing the majority: a leader steps down after its lease (0.5 s), a
	// follower stops after FailAfter/2 without a leader; then the daemon
	// takes the addresses down.
	pairStop = 1500 * time.Millisecond
)

// newWitnessCluster is newCluster for two concentrators and a witness.
func newWitnessCluster(t *testing.T) *env {
	t.Helper()
	requireSwan(t)
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
	e.witness = witnessNode
	if err := e.startCluster(); err != nil {
		t.Fatal(err)
	}
	return e
}

// addCharons starts strongSwan clients towards the given VIPs, one each,
// as addClients does for the three VIPs of a full cluster. They probe
// with DPD every second.
func (e *env) addCharons(vips []netip.Addr) ([]*client, error) {
	var cs []*client
	for _, vip := range vips {
		j := len(e.clients) + 1
		ns, err := e.lab.AddNS(fmt.Sprintf("c%d", j))
		if err != nil {
			return nil, err
		}
		if err := e.lab.Attach(e.hub, "br0", fmt.Sprintf("c%d", j), ns, "eth0", netip.PrefixFrom(clientAddr(j), bridgeBits)); err != nil {
			return nil, err
		}
		if err := ns.AddAddr("lo", netip.PrefixFrom(clientInner(j), 32)); err != nil {
			return nil, err
		}
		c := &client{j: j, ns: ns, vip: vip, dpd: time.Second}
		e.clients = append(e.clients, c)
		cs = append(cs, c)
	}
	err := joinErrors("starting charon", parallel(len(cs), func(i int) error {
		c := cs[i-1]
		dir := filepath.Join(e.dir, fmt.Sprintf("swan%d", c.j))
		d, err := swan.Start(c.ns, dir, c.conf(), swan.Options{LibIPsec: true})
		c.swan = d
		// See addClients: swanctl can beat charon to its VICI socket.
		for try := 0; d != nil && err != nil && try < 20; try++ {
			time.Sleep(100 * time.Millisecond)
			_, err = d.Swanctl("--load-all", "--file", filepath.Join(dir, "swanctl.conf"))
		}
		if err != nil {
			return err
		}
		return d.Initiate("net")
	}))
	return cs, err
}

// TestWitnessPair: two concentrators and a witness, simulated clients
// (RFC 6311) and a few charons on both VIPs, DPD running. The leading
// concentrator is SIGKILLed (the other one if the witness leads): the
// survivor takes its VIP over within pairTakeover, which it can only do
// with the witness's vote, and every SA survives. The witness reports the
// leader and the VIP owners and owns none. Then the witness is killed too:
// the last concentrator has no majority and must stop serving within
// pairStop, since it cannot tell a dead pair from its own isolation.
func TestWitnessPair(t *testing.T) {
	e := newWitnessCluster(t)
	data := []int{1, 2}
	w := witnessNode
	var vips []netip.Addr
	for _, i := range data {
		vips = append(vips, vipOf(i))
	}
	groups := map[int]*loadGroup{}
	for _, i := range data {
		g, err := e.addLoad(i, vipOf(i), pairLoadsPerVIP, true, "1")
		if err != nil {
			t.Fatal(err)
		}
		groups[i] = g
	}
	var charonVIPs []netip.Addr
	for range pairCharonsPerIP {
		charonVIPs = append(charonVIPs, vips...)
	}
	charons, err := e.addCharons(charonVIPs)
	if err != nil {
		t.Fatal(err)
	}
	total := len(data)*pairLoadsPerVIP + len(charons)
	if err := e.waitListedOn(data, 30*time.Second, total); err != nil {
		t.Fatal(err)
	}
	if sas, err := e.saList(w); err != nil || len(sas) != 0 {
		t.Errorf("the witness lists SAs: %v, %v", sas, err)
	}
	before := map[int]saKey{}
	inits := map[int]int{}
	for _, c := range charons {
		sa, err := c.sa()
		if err != nil {
			t.Fatal(err)
		}
		before[c.j], inits[c.j] = c.key(sa), c.initCount()
	}
	time.Sleep(2 * time.Second)

	// The witness's view before: a member that votes, owns nothing and
	// knows who serves what.
	ws, err := e.status(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWitnessView(ws, map[netip.Addr]string{vipOf(1): nodeID(1), vipOf(2): nodeID(2)}); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	victim := e.index(ws.Leader)
	if victim == w {
		victim = 1
	}
	survivor := 3 - victim
	term := ws.Term
	logAt := map[int]int{}
	for _, c := range charons {
		logAt[c.j] = len(c.swan.Log())
	}
	t.Logf("%d SAs (%d simulated, %d charons) on %v; leader %s at term %d; killing node%d",
		total, len(data)*pairLoadsPerVIP, len(charons), vips, ws.Leader, term, victim)

	// The survivor's own VIP is down while it has no leader (an election
	// when the leader died); the watch holds that to the 3 s traffic
	// budget and sees no VIP on two running nodes.
	watch := newVIPWatch(e, map[int]netip.Addr{survivor: vipOf(survivor)})
	defer watch.stop()
	killAt := e.kill(victim)
	var moved time.Duration
	if err := e.waitCond(10*time.Second, fmt.Sprintf("node%d to take %s", survivor, vipOf(victim)), func() error {
		if err := e.servesOnly(survivor, vips...); err != nil {
			return err
		}
		moved = time.Since(killAt)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("node%d killed: node%d serves both VIPs after %v", victim, survivor, moved.Round(time.Millisecond))
	if moved > pairTakeover {
		t.Errorf("takeover took %v, want at most %v", moved.Round(time.Millisecond), pairTakeover)
	}
	// Both voters left agree: raft committed the move, which takes two
	// of three votes, so the witness's among them.
	if err := e.waitCond(5*time.Second, "the witness to see the move", func() error {
		ws, err = e.status(w)
		if err != nil {
			return err
		}
		if l := e.index(ws.Leader); l != survivor && l != w {
			return fmt.Errorf("leader %q", ws.Leader)
		}
		return checkWitnessView(ws, map[netip.Addr]string{vipOf(1): nodeID(survivor), vipOf(2): nodeID(survivor)})
	}); err != nil {
		t.Fatal(err)
	}
	if victim == e.index(ws.Leader) || ws.Term <= term && e.index(ws.Leader) != w {
		t.Errorf("after the kill: leader %s at term %d (was term %d)", ws.Leader, ws.Term, term)
	}
	t.Logf("witness after the kill: leader %s, term %d", ws.Leader, ws.Term)
	human, err := e.hikeCmd(w, "cluster", "status")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkHumanStatus(string(human), nodeID(w), "witness", ws.Leader, map[string]string{
		vipOf(1).String(): nodeID(survivor), vipOf(2).String(): nodeID(survivor)}); err != nil {
		t.Errorf("hike cluster status on the witness: %v\n%s", err, human)
	}

	if err := e.waitListedOn([]int{survivor}, 10*time.Second, total); err != nil {
		t.Fatal(err)
	}
	t.Logf("every SA listed on node%d %v after the kill", survivor, time.Since(killAt).Round(time.Millisecond))
	if err := loadProgress(e, survivor, groups[victim], 3*time.Second); err != nil {
		t.Error(err)
	}
	for _, c := range charons {
		sa, err := c.sa()
		switch {
		case err != nil:
			t.Error(err)
		case c.key(sa) != before[c.j]:
			t.Errorf("charon %d: IKE SA %v, was %v", c.j, c.key(sa), before[c.j])
		case c.initCount() != inits[c.j]:
			t.Errorf("charon %d: a new IKE_SA_INIT after the kill", c.j)
		}
		synced := strings.Contains(c.swan.Log()[logAt[c.j]:], "MSG_ID_SYN")
		if c.vip == vipOf(victim) && !synced {
			t.Errorf("charon %d (VIP %s, moved): no RFC 6311 sync", c.j, c.vip)
		}
		if c.vip != vipOf(victim) && synced {
			t.Errorf("charon %d (VIP %s, not moved): resynchronised", c.j, c.vip)
		}
	}
	// A charon's DPD request sent while its VIP was down (the moved ones
	// until the takeover, the others for the election when the leader
	// died) is retransmitted after strongSwan's 4 s; it must be answered
	// then at the latest.
	if err := e.waitCond(8*time.Second, "every charon's DPD to be answered", func() error {
		for _, c := range charons {
			if _, answered := c.dpdSince(logAt[c.j]); answered == 0 {
				return fmt.Errorf("charon %d (VIP %s): none of its DPD requests answered since the kill", c.j, c.vip)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	for _, i := range data {
		g := groups[i]
		s, err := g.stop()
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("load group %d (VIP %s): established %d, up at end %d, DPD completed %d timeouts %d, resyncs seen %d",
			g.k, g.vip, s.Established, s.UpAtEnd, s.DPD.Completed, s.DPD.Timeouts, s.ResyncsSeen)
		if s.UpAtEnd != int64(g.clients) || s.Established != int64(g.clients) || s.DPD.Timeouts != 0 {
			t.Errorf("load group %d lost SAs: %+v", g.k, *s)
		}
		if moved := g.vip == vipOf(victim); moved && s.ResyncsSeen < uint64(g.clients) || !moved && s.ResyncsSeen != 0 {
			t.Errorf("load group %d (VIP %s, moved %v) saw %d RFC 6311 resyncs", g.k, g.vip, moved, s.ResyncsSeen)
		}
	}
	if err := watch.stop(); err != nil {
		t.Error(err)
	}
	own := "never"
	if g, ok := watch.gaps[survivor]; ok {
		own = fmt.Sprintf("for %v (samples ~%v apart)", g[1].Sub(g[0]).Round(time.Millisecond), watch.interval())
	}
	t.Logf("node%d's own VIP was down: %s", survivor, own)
	if t.Failed() {
		return
	}

	// No majority: the last concentrator must let go of both VIPs, and
	// keep them down.
	witnessKilled := e.kill(w)
	var dropped time.Duration
	if err := e.waitCond(5*time.Second, fmt.Sprintf("node%d to stop serving", survivor), func() error {
		if err := e.servesOnly(survivor); err != nil {
			return err
		}
		dropped = time.Since(witnessKilled)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("witness killed too: node%d took its VIPs down after %v", survivor, dropped.Round(time.Millisecond))
	if dropped > pairStop {
		t.Errorf("node%d served without a majority for %v, want at most %v", survivor, dropped.Round(time.Millisecond), pairStop)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if err := e.servesOnly(survivor); err != nil {
			t.Fatalf("alone: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s, err := e.status(survivor)
	if err != nil {
		t.Fatal(err)
	}
	if s.Serving || s.Leader != "" {
		t.Errorf("alone, node%d says serving %v, leader %q", survivor, s.Serving, s.Leader)
	}
}

// checkWitnessView checks a witness's status: it says it is one, names a
// leader among the members, lists itself as a witness member, owns no VIP
// and sees the owners want.
func checkWitnessView(s *status, want map[netip.Addr]string) error {
	var errs []error
	if !s.Witness || s.Node != nodeID(witnessNode) {
		errs = append(errs, fmt.Errorf("node %q witness %v", s.Node, s.Witness))
	}
	if s.Leader == "" {
		errs = append(errs, errors.New("no leader"))
	}
	self := false
	for _, m := range s.Members {
		self = self || m.ID == s.Node && m.Witness
	}
	if !self || len(s.Members) != nodes {
		errs = append(errs, fmt.Errorf("members %+v", s.Members))
	}
	for _, v := range s.VIPs {
		if v.Owner == s.Node || v.Home == s.Node {
			errs = append(errs, fmt.Errorf("the witness owns or homes VIP %s", v.VIP))
		}
	}
	for vip, owner := range want {
		if o := s.owner(vip); o != owner {
			errs = append(errs, fmt.Errorf("owner of %s is %q, want %q", vip, o, owner))
		}
	}
	if len(s.VIPs) != len(want) {
		errs = append(errs, fmt.Errorf("VIPs %+v", s.VIPs))
	}
	return errors.Join(errs...)
}
