package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkHumanStatus checks `hike cluster status` as printed for people: the
// headline names the node, its role and the leader, the member table
// lists every node, and the VIP table has exactly the owners want (VIP
// address to owner).
func checkHumanStatus(out, node, role, leader string, want map[string]string) error {
	lines := strings.Split(out, "\n")
	var errs []error
	head := fmt.Sprintf("node %s (%s),", node, role)
	if !strings.HasPrefix(lines[0], head) || !strings.Contains(lines[0], "leader: "+leader+",") {
		errs = append(errs, fmt.Errorf("headline %q, want %q... leader: %s", lines[0], head, leader))
	}
	members := map[string]bool{}
	owners := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if a, err := netip.ParseAddr(f[0]); err == nil && len(f) == 3 {
			owners[a.String()] = f[1]
		}
		if e := strings.TrimPrefix(f[0], "node"); e != f[0] && len(f) >= 6 {
			members[f[0]] = true
		}
	}
	for i := 1; i <= nodes; i++ {
		if !members[nodeID(i)] {
			errs = append(errs, fmt.Errorf("member %s not listed", nodeID(i)))
		}
	}
	if fmt.Sprint(owners) != fmt.Sprint(want) {
		errs = append(errs, fmt.Errorf("VIP owners %v, want %v", owners, want))
	}
	return errors.Join(errs...)
}

// TestCLIMembership drives `hike cluster` through the real binary and the
// nodes' control sockets on a 3-node cluster: status for people, leave
// refused (a 3-node cluster would drop below 3 voters), join of a voter a
// no-op, handback to a reachable node that has its VIPs a no-op, and
// handback to a dead node or an unknown one refused with a message that
// says why; nothing moves on a refusal.
func TestCLIMembership(t *testing.T) {
	e := newCluster(t)
	st, err := e.status(1)
	if err != nil {
		t.Fatal(err)
	}
	leader := e.index(st.Leader)
	if leader == 0 {
		t.Fatalf("no leader: %+v", st)
	}
	follower := leader%nodes + 1
	homes := map[string]string{}
	for i := 1; i <= nodes; i++ {
		homes[vipOf(i).String()] = nodeID(i)
	}
	for i := 1; i <= nodes; i++ {
		out, err := e.hikeCmd(i, "cluster", "status")
		if err != nil {
			t.Fatal(err)
		}
		if err := checkHumanStatus(string(out), nodeID(i), "member", st.Leader, homes); err != nil {
			t.Errorf("hike cluster status on node%d: %v\n%s", i, err, out)
		}
	}

	// Leave: refused on the leader (it checks before handing leadership
	// over) and on a follower (the leader refuses the forwarded request).
	for _, i := range []int{leader, follower} {
		out, err := e.hikeCmd(i, "cluster", "leave")
		if err == nil {
			t.Fatalf("hike cluster leave on node%d succeeded in a 3-node cluster: %s", i, out)
		}
		if !strings.Contains(string(out), "only 2 voters would remain") || !strings.Contains(string(out), "needs 3") {
			t.Errorf("hike cluster leave on node%d: %s", i, out)
		}
		t.Logf("hike cluster leave on node%d (leader node%d): %s", i, leader, strings.TrimSpace(string(out)))
	}
	// Join as a voter: nothing to do, and it says so by succeeding.
	for _, i := range []int{leader, follower} {
		out, err := e.hikeCmd(i, "cluster", "join")
		if err != nil || !strings.Contains(string(out), "joined") {
			t.Errorf("hike cluster join on node%d, a voter: %v %s", i, err, out)
		}
	}
	// Handback of a node that has its own VIPs: nothing moves.
	if out, err := e.hikeCmd(leader, "cluster", "handback", "--node", nodeID(follower)); err != nil ||
		!strings.Contains(string(out), "0 VIP(s) handed back to "+nodeID(follower)) {
		t.Errorf("handback to node%d, which serves its VIP: %v %s", follower, err, out)
	}
	if out, err := e.hikeCmd(follower, "cluster", "handback", "--node", "node9"); err == nil ||
		!strings.Contains(string(out), `"node9" is not a configured node`) {
		t.Errorf("handback to an unknown node: %v %s", err, out)
	}
	for i := 1; i <= nodes; i++ {
		if err := e.servesOnly(i, vipOf(i)); err != nil {
			t.Fatalf("after the refused and empty operations: %v", err)
		}
	}
	if t.Failed() {
		return
	}

	// A dead node gets nothing back: the leader refuses, from any node.
	dead := follower
	e.kill(dead)
	taker := 0
	if err := e.waitCond(10*time.Second, "the dead node's VIP to move", func() error {
		h, err := e.holder(vipOf(dead))
		taker = h
		if err == nil && h == 0 {
			err = fmt.Errorf("nobody has %s", vipOf(dead))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, i := range e.alive() {
		out, err := e.hikeCmd(i, "cluster", "handback", "--node", nodeID(dead))
		if err == nil {
			t.Errorf("handback to dead node%d on node%d succeeded: %s", dead, i, out)
		} else if !strings.Contains(string(out), fmt.Sprintf("%q is not reachable from the leader", nodeID(dead))) {
			t.Errorf("handback to dead node%d on node%d: %s", dead, i, out)
		}
		t.Logf("hike cluster handback --node %s on node%d: %s", nodeID(dead), i, strings.TrimSpace(string(out)))
	}
	if err := e.servesOnly(taker, vipOf(taker), vipOf(dead)); err != nil {
		t.Errorf("after the refused handback: %v", err)
	}
	// Only the leader hears every member: it shows the dead one
	// unreachable.
	out, err := e.hikeCmd(leader, "cluster", "status")
	if err != nil {
		t.Fatal(err)
	}
	reach := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 6 && e.index(f[0]) != 0 {
			reach[f[0]] = f[3]
		}
	}
	for i := 1; i <= nodes; i++ {
		if want := fmt.Sprint(i != dead); reach[nodeID(i)] != want {
			t.Errorf("the leader shows node%d reachable %q, want %s:\n%s", i, reach[nodeID(i)], want, out)
		}
	}
}

// TestBadInterface: a node whose cluster.interface does not exist refuses
// to start and says which key is wrong, rather than failing at every
// attempt to add a VIP later.
func TestBadInterface(t *testing.T) {
	requireLab(t)
	e, err := newEnv(t)
	t.Cleanup(func() { e.close(t.Failed()) })
	if err != nil {
		t.Fatal(err)
	}
	e.writeConfigs()
	n := e.nodes[1]
	f := filepath.Join(n.dir, "hike.yaml")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(strings.Replace(string(b), "interface: eth0", "interface: nosuch0", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := n.ns.Run(hikeBin, "serve", "-c", f)
	if err == nil || !strings.Contains(string(out), `cluster.interface "nosuch0"`) {
		t.Fatalf("hike serve with a missing interface: %v\n%s", err, out)
	}
}
