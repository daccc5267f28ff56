package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hike-vpn/hike/internal/config"
)

// Membership changes and handbacks must run on the leader: only it can
// change raft's configuration, and only it knows which members answer. A
// node asks it over the forward channel; the leader acts in the name of
// the node its client certificate names, so a node can add or remove only
// itself. The first byte of such a request is never cmdVersion.
const (
	reqJoin     byte = 0x81 // add the sender as a voter
	reqLeave    byte = 0x82 // hand the sender's VIPs over, then remove it
	reqHandback byte = 0x83 // followed by a node ID: return its VIPs to it
	reqApplied  byte = 0x84 // how far the leader's state is applied (see monitor)
)

func isRequest(b byte) bool { return b >= reqJoin && b <= reqApplied }

// Join makes this node a voter again after Leave: the leader adds it with
// its configured address, and it catches up by log or snapshot. Joining
// as a voter that already is one changes nothing. A node that left knows
// no leader; it asks the configured peers in turn.
func (n *Node) Join(ctx context.Context) error {
	_, err := n.request(ctx, []byte{reqJoin})
	return err
}

// Leave takes this node out of the voter set, for maintenance or removal.
// A leader first hands leadership to another voter. The leader then moves
// this node's VIPs, and the SAs on them, to the reachable data nodes as a
// takeover would (EventVIP), and removes this node. Afterwards the node
// hears from no leader and stops serving (EventServing); Join brings it
// back, and Handback its VIPs.
//
// Leave refuses when fewer than 3 voters would remain (a cluster that
// small should rather lose the node as a failure), and when the node owns
// VIPs but no other data node is reachable to take them.
func (n *Node) Leave(ctx context.Context) error {
	_, err := n.request(ctx, []byte{reqLeave})
	return err
}

// Handback moves every VIP whose configuration lists node (its home) and
// that another node serves back to node, with the SAs on it, and returns
// how many moved. It is what an operator runs when a failed node is back:
// a node never claims its VIPs back by itself, because the SAs that moved
// with them are being served elsewhere. The leader refuses unless node is
// a voter it hears from. Callable on any node.
//
// After an error some VIPs may have moved; running it again moves the rest
// (moved then counts only those).
func (n *Node) Handback(ctx context.Context, node string) (moved int, err error) {
	if node == "" || len(node) > 255 {
		return 0, fmt.Errorf("cluster: %q is not a node ID", node)
	}
	msg, err := n.request(ctx, append([]byte{reqHandback}, node...))
	if err != nil {
		return 0, err
	}
	moved, err = strconv.Atoi(msg)
	if err != nil {
		return 0, fmt.Errorf("cluster: handback: leader answered %q", msg)
	}
	return moved, nil
}

// request runs req on the leader, here or over the forward channel, and
// retries across elections like apply.
func (n *Node) request(ctx context.Context, req []byte) (string, error) {
	if !n.isStarted() {
		return "", errors.New("cluster: not started")
	}
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	self := n.opts.Cluster.NodeID
	for {
		var (
			msg string
			err error
		)
		addr, id := n.raft.LeaderWithID()
		switch {
		case n.raft.State() == raft.Leader && req[0] == reqLeave:
			// raft can remove its leader, but the node would go on leading
			// until the removal commits; hand over first and ask the next,
			// unless the next would refuse anyway.
			var voters []string
			if voters, err = n.voters(); err == nil {
				if _, err = n.planLeave(voters, self); err == nil {
					err = n.raft.LeadershipTransfer().Error()
				}
			}
			if err == nil {
				err = errors.New("cluster: handed leadership over")
			}
		case n.raft.State() == raft.Leader:
			var st byte
			st, msg = n.serveRequest(req, self)
			err = statusError(st, msg)
		case id != "":
			msg, err = n.fwd.call(ctx, string(addr), req)
		case req[0] == reqJoin:
			msg, err = n.askPeers(ctx, req)
		default:
			err = raft.ErrNotLeader
		}
		if err == nil || errors.Is(err, errRefused) {
			return msg, err
		}
		n.log.Debug("cluster: request retry", "err", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster: %w (last: %v)", ctx.Err(), err)
		case <-n.stop:
			return "", errors.New("cluster: closed")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// askPeers sends req to each other configured node until the leader
// answers; the others say they are not.
func (n *Node) askPeers(ctx context.Context, req []byte) (string, error) {
	err := error(raft.ErrNotLeader)
	for _, p := range n.opts.Cluster.Peers {
		if p.ID == n.opts.Cluster.NodeID {
			continue
		}
		var msg string
		msg, err = n.fwd.call(ctx, p.Address, req)
		if err == nil || errors.Is(err, errRefused) {
			return msg, err
		}
	}
	return "", err
}

// serveRequest runs a request from node peer on the leader.
func (n *Node) serveRequest(req []byte, peer string) (byte, string) {
	if n.raft.State() != raft.Leader {
		return fwdRetry, "not the leader"
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	var (
		msg string
		err error
	)
	switch {
	case req[0] == reqApplied && len(req) == 1:
		// A new leader may not have applied what its predecessor
		// committed; it answers once it serves (its barrier is through).
		if !n.Serving() {
			return fwdRetry, "leader not caught up yet"
		}
		return fwdOK, strconv.FormatUint(n.applied(), 10)
	case req[0] == reqJoin && len(req) == 1:
		err = n.addVoter(peer)
	case req[0] == reqLeave && len(req) == 1:
		err = n.removeVoter(ctx, peer)
	case req[0] == reqHandback && len(req) > 1:
		var moved int
		moved, err = n.handback(ctx, string(req[1:]))
		msg = strconv.Itoa(moved)
	default:
		return fwdRefused, errCommand.Error()
	}
	switch {
	case err == nil:
		return fwdOK, msg
	case errors.Is(err, errRefused):
		// The caller wraps the reason in errRefused again (statusError).
		return fwdRefused, strings.TrimPrefix(err.Error(), errRefused.Error()+": ")
	default:
		return fwdRetry, err.Error()
	}
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errRefused, fmt.Sprintf(format, args...))
}

// peer returns the configured node id.
func (n *Node) peer(id string) (config.Peer, bool) {
	i := slices.IndexFunc(n.opts.Cluster.Peers, func(p config.Peer) bool { return p.ID == id })
	if i < 0 {
		return config.Peer{}, false
	}
	return n.opts.Cluster.Peers[i], true
}

// voters returns the voter IDs of raft's latest configuration.
func (n *Node) voters() ([]string, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	return ids, nil
}

// reachable reports, on the leader, whether it heard from member id within
// FailAfter/2: the bound within which a follower that hears from the
// leader keeps serving.
func (n *Node) reachable(id string, now time.Time) bool {
	if id == n.opts.Cluster.NodeID {
		return true
	}
	t := n.stream.lastSeen(id)
	return !t.IsZero() && now.Sub(t) < n.opts.FailAfter/2
}

func (n *Node) addVoter(id string) error {
	p, ok := n.peer(id)
	if !ok {
		return refuse("%q is not a configured node", id)
	}
	voters, err := n.voters()
	if err != nil {
		return err
	}
	if slices.Contains(voters, id) {
		return nil
	}
	// The configuration bounds the peers, so this holds unless raft's
	// voters were changed behind hike's back.
	if len(voters) >= config.MaxClusterVoters {
		return refuse("the cluster has %d voters already", len(voters))
	}
	n.log.Info("cluster: adding voter", "node", id)
	// prevIndex 0: raft checks nothing, as GetConfiguration gives no index.
	// Membership changes are rare and each is for the asking node only.
	return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(p.Address), 0, applyTimeout).Error()
}

func (n *Node) removeVoter(ctx context.Context, id string) error {
	if id == n.opts.Cluster.NodeID {
		return errors.New("cluster: the leader is leaving; ask the next one")
	}
	voters, err := n.voters()
	if err != nil {
		return err
	}
	if !slices.Contains(voters, id) {
		return nil
	}
	moves, err := n.planLeave(voters, id)
	if err != nil {
		return err
	}
	// Hand the VIPs over first, so they are served throughout.
	for _, m := range moves {
		n.log.Info("cluster: handing VIP over from a leaving node", "vip", m.vip, "from", id, "to", m.to)
		if err := n.SetVIPOwner(ctx, m.vip, id, m.to); err != nil && !errors.Is(err, errOwnerChanged) {
			return err
		}
	}
	n.log.Info("cluster: removing voter", "node", id)
	return n.raft.RemoveServer(raft.ServerID(id), 0, applyTimeout).Error()
}

// planLeave checks, on the leader, that voter id may leave and says where
// its VIPs go: to the reachable data nodes, least loaded first, as in a
// takeover.
func (n *Node) planLeave(voters []string, id string) ([]assignment, error) {
	if len(voters)-1 < config.MinClusterVoters {
		return nil, refuse("only %d voters would remain; a cluster needs %d (stop the node instead: the others take its VIPs over)",
			len(voters)-1, config.MinClusterVoters)
	}
	now := time.Now()
	load := map[string]int{}
	for _, v := range voters {
		if v != id && !n.witness[v] && n.reachable(v, now) {
			load[v] = 0
		}
	}
	var moving []netip.Addr
	for a, o := range n.VIPs() {
		if _, ok := load[o]; ok {
			load[o]++
		}
		if o == id {
			moving = append(moving, a)
		}
	}
	if len(moving) > 0 && len(load) == 0 {
		return nil, refuse("no other data node is reachable to take the VIPs of %q", id)
	}
	return assign(moving, load), nil
}

func (n *Node) handback(ctx context.Context, node string) (int, error) {
	p, ok := n.peer(node)
	switch {
	case !ok:
		return 0, refuse("%q is not a configured node", node)
	case p.Witness:
		return 0, refuse("%q is a witness and owns no VIPs", node)
	}
	voters, err := n.voters()
	if err != nil {
		return 0, err
	}
	if !slices.Contains(voters, node) {
		return 0, refuse("%q is not a voter (it left; Join it first)", node)
	}
	if !n.reachable(node, time.Now()) {
		return 0, refuse("%q is not reachable from the leader; it takes its VIPs back only while it is up and in contact", node)
	}
	owners := n.VIPs()
	moved := 0
	for _, v := range p.VIPs {
		a := v.Addr().Unmap()
		from, has := owners[a]
		if has && from == node {
			continue
		}
		if _, _, ok := Releasing(from); ok {
			continue // already on its way
		}
		to := node
		if from != "" && n.reachable(from, time.Now()) {
			// The holder releases first (release.go).
			to = releasing(from, node)
		}
		n.log.Info("cluster: handing VIP back", "vip", a, "from", from, "to", to)
		switch err := n.SetVIPOwner(ctx, a, from, to); {
		case err == nil:
			moved++
		case errors.Is(err, errOwnerChanged):
			// Moved meanwhile; a new call sees where it is now.
		default:
			return moved, err
		}
	}
	return moved, nil
}
