package cluster

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// monitor watches raft and, on the leader, the other nodes. It runs every
// tick on every node:
//   - it reports leader, membership and serving changes as events;
//   - a node stops serving when it is cut off: a follower that has not
//     heard from a leader for FailAfter/2, a candidate, or a leader whose
//     lease ran out (raft steps it down after LeaderLeaseTimeout);
//   - the leader assigns configured VIPs that have no owner yet and moves
//     the VIPs of a node unreachable for FailAfter to a surviving node.
//
// The minority side stops before the majority side moves anything, so no
// VIP is served twice as long as clocks run at similar rates.
func (n *Node) monitor() {
	defer n.wg.Done()
	tick := min(n.opts.FailAfter/10, n.opts.Cluster.HeartbeatTimeout/2)
	t := time.NewTicker(tick)
	defer t.Stop()
	var (
		leader, prevLeader string
		leaderContact      time.Time // when we last heard from prevLeader as a follower
		leaderSince        time.Time
		serving            bool
		members            []Member
		claimed            bool
		// A node serves once synced: it has applied target (see below).
		// syncGen discards answers to requests made before contact was
		// last lost.
		synced, syncing bool
		target, syncGen uint64
		syncCh          = make(chan syncResult, 1)
		// A follower that was synced when it lost the leader, and when it
		// last heard from it: back in contact within FailAfter of that, it
		// serves again at once (see below).
		wasSynced   bool
		lastHeardAt time.Time
	)
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		state := n.raft.State()
		_, lid := n.raft.LeaderWithID()
		if state == raft.Follower && lid != "" {
			prevLeader, leaderContact = string(lid), n.raft.LastContact()
		}

		if string(lid) != leader {
			leader = string(lid)
			n.publish(Event{Kind: EventLeader, Leader: leader})
		}

		// GetConfiguration reads raft's latest configuration without a
		// round trip through its loop (and without its index), so it is
		// compared by content every tick.
		if cf := n.raft.GetConfiguration(); cf.Error() == nil && !sameMembers(cf.Configuration().Servers, members, leader) {
			ms := make([]Member, 0, len(cf.Configuration().Servers))
			for _, s := range cf.Configuration().Servers {
				if s.Suffrage != raft.Voter {
					continue
				}
				ms = append(ms, Member{ID: string(s.ID), Address: string(s.Address), Witness: n.witness[string(s.ID)], Leader: string(s.ID) == leader})
			}
			changed := members == nil || !slices.EqualFunc(ms, members, func(a, b Member) bool { return a.ID == b.ID && a.Address == b.Address })
			members = ms
			n.view.Lock()
			n.view.members = ms
			n.view.Unlock()
			if changed {
				n.publish(Event{Kind: EventMembers, Members: slices.Clone(ms)})
			}
		}

		contact := false
		switch state {
		case raft.Leader:
			contact = true
		case raft.Follower:
			contact = lid != "" && now.Sub(n.raft.LastContact()) < n.opts.FailAfter/2
		}
		// In contact is not enough: a node that was cut off or restarted
		// holds an old VIP map until it has applied what the others decided
		// meanwhile. A follower serves once it has applied what the leader
		// had applied when contact was made; a leader once a barrier has
		// gone through its log.
		select {
		case r := <-syncCh:
			syncing = false
			if r.gen == syncGen && r.err == nil && contact {
				synced, target = true, r.index
			}
		default:
		}
		switch {
		case !contact:
			if synced && state != raft.Leader {
				wasSynced, lastHeardAt = true, n.raft.LastContact()
			}
			synced, target = false, 0
			if syncing {
				syncGen++
			}
		case synced || syncing:
		case state != raft.Leader && wasSynced && now.Sub(lastHeardAt) < n.opts.FailAfter:
			// A leader election, typically: no leader can have moved this
			// node's VIPs, because a leader moves them only after FailAfter
			// without hearing from it, counted at the earliest from its
			// election, which came after our last contact with its
			// predecessor. VIPs moved to this node meanwhile arrive with
			// the log. So a short loss needs no resync, and the VIPs are
			// down only for the election.
			synced, wasSynced = true, false
		default:
			wasSynced = false
			syncing = true
			leading, addr := state == raft.Leader, n.raft.Leader()
			n.wg.Add(1)
			go func(gen uint64) {
				defer n.wg.Done()
				var r syncResult
				if leading {
					r.err = n.raft.Barrier(n.opts.FailAfter / 2).Error()
				} else {
					r.index, r.err = n.leaderApplied(string(addr))
				}
				r.gen = gen
				syncCh <- r
			}(syncGen)
		}
		if synced && target != 0 && n.applied() >= target {
			target = 0 // caught up; no need to look again
		}
		s := contact && synced && target == 0
		if s != serving {
			serving = s
			n.view.Lock()
			n.view.serving = s
			n.view.Unlock()
			n.publish(Event{Kind: EventServing, Serving: s})
		}

		if state != raft.Leader || !s {
			if state != raft.Leader {
				leaderSince, claimed = time.Time{}, false
			}
			continue
		}
		if leaderSince.IsZero() {
			leaderSince = now
		}
		if !claimed {
			claimed = n.claimVIPs()
		}
		n.takeOver(members, now, leaderSince, prevLeader, leaderContact)
	}
}

type syncResult struct {
	gen, index uint64
	err        error
}

// leaderApplied asks the leader at addr how far its state is applied.
func (n *Node) leaderApplied(addr string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.FailAfter/2)
	defer cancel()
	msg, err := n.fwd.call(ctx, addr, []byte{reqApplied})
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(msg, 10, 64)
}

// applied is the log index up to which this node's state reflects the
// log: the last command applied, or the snapshot it was restored from.
func (n *Node) applied() uint64 {
	snap, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	return max(n.fsm.last.Load(), snap)
}

// sameMembers reports whether ms are the voters among servers, in order,
// with leader marked.
func sameMembers(servers []raft.Server, ms []Member, leader string) bool {
	if ms == nil {
		return false
	}
	i := 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if i == len(ms) {
			return false
		}
		m := ms[i]
		if m.ID != string(s.ID) || m.Address != string(s.Address) || m.Leader != (m.ID == leader) {
			return false
		}
		i++
	}
	return i == len(ms)
}

// claimVIPs gives each configured VIP without an owner to the node that
// configures it. It reports whether all were in place.
func (n *Node) claimVIPs() bool {
	cur := n.VIPs()
	ok := true
	for _, p := range n.opts.Cluster.Peers {
		if p.Witness {
			continue
		}
		for _, v := range p.VIPs {
			a := v.Addr().Unmap()
			if _, has := cur[a]; has {
				continue
			}
			if err := n.setVIPNow(a, "", p.ID); err != nil && err != errOwnerChanged {
				ok = false
			}
		}
	}
	return ok
}

// takeOver moves the VIPs of nodes that have been unreachable for
// FailAfter. Contact with a follower is the last byte it sent on a
// connection this leader dialed (heartbeat and append answers); a node not
// heard from since this leader took over counts from then, except the
// previous leader, which counts from when this node last heard from it.
func (n *Node) takeOver(members []Member, now, leaderSince time.Time, prevLeader string, prevContact time.Time) {
	self := n.opts.Cluster.NodeID
	alive := map[string]bool{}
	var down []string
	for _, m := range members {
		if m.ID == self {
			alive[m.ID] = true
			continue
		}
		contact := n.stream.lastSeen(m.ID)
		if base := leaderSince; m.ID == prevLeader && !prevContact.IsZero() {
			base = prevContact
			if contact.Before(base) {
				contact = base
			}
		} else if contact.Before(base) {
			contact = base
		}
		if now.Sub(contact) < n.opts.FailAfter {
			alive[m.ID] = true
		} else {
			down = append(down, m.ID)
		}
	}
	// A VIP whose owner is no voter (it left, or was removed without
	// handing its VIPs over) is as good as down: nobody else would move it.
	vips := n.VIPs()
	for _, o := range vips {
		o = holder(o)
		if o != "" && !alive[o] && !slices.Contains(down, o) && !slices.ContainsFunc(members, func(m Member) bool { return m.ID == o }) {
			down = append(down, o)
		}
	}
	if len(down) == 0 {
		return
	}
	load := map[string]int{}
	for id := range alive {
		if !n.witness[id] {
			load[id] = 0
		}
	}
	if len(load) == 0 {
		return
	}
	for _, o := range vips {
		if _, ok := load[holder(o)]; ok {
			load[holder(o)]++
		}
	}
	var moving []netip.Addr
	from := map[netip.Addr]string{}
	for v, o := range vips {
		// A VIP being released by a node that failed meanwhile is taken
		// over like the rest of that node's.
		if slices.Contains(down, holder(o)) {
			moving = append(moving, v)
			from[v] = o
		}
	}
	for _, m := range assign(moving, load) {
		n.log.Info("cluster: taking over VIP", "vip", m.vip, "from", from[m.vip], "to", m.to)
		if err := n.setVIPNow(m.vip, from[m.vip], m.to); err != nil {
			n.log.Warn("cluster: VIP takeover", "vip", m.vip, "err", err)
		}
	}
}

type assignment struct {
	vip netip.Addr
	to  string
}

// assign gives each VIP, in address order, to the node with the fewest
// VIPs (load, updated as it goes), ties broken by node ID: deterministic,
// so a new leader repeating a half-done round makes the same choices.
func assign(vips []netip.Addr, load map[string]int) []assignment {
	vips = slices.Clone(vips)
	slices.SortFunc(vips, netip.Addr.Compare)
	out := make([]assignment, 0, len(vips))
	for _, v := range vips {
		to := ""
		for id, l := range load {
			if to == "" || l < load[to] || (l == load[to] && id < to) {
				to = id
			}
		}
		if to == "" {
			break
		}
		load[to]++
		out = append(out, assignment{v, to})
	}
	return out
}

// setVIPNow applies a VIP move from the leader's monitor, bounded so a
// stuck commit cannot stall monitoring for long.
func (n *Node) setVIPNow(vip netip.Addr, from, to string) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.FailAfter)
	defer cancel()
	return n.SetVIPOwner(ctx, vip, from, to)
}

// Subscribe returns a channel of events and a function that ends the
// subscription. Events are queued per subscriber without bound (they are
// rare), so a slow reader delays nothing and loses nothing; the channel
// is closed by cancel or Close.
func (n *Node) Subscribe() (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event), wake: make(chan struct{}, 1), done: make(chan struct{})}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	n.subs[s] = struct{}{}
	n.mu.Unlock()
	go s.run()
	return s.ch, func() {
		n.mu.Lock()
		delete(n.subs, s)
		n.mu.Unlock()
		s.close()
	}
}

func (n *Node) publish(e Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for s := range n.subs {
		s.push(e)
	}
}

type subscriber struct {
	mu    sync.Mutex
	queue []Event
	ch    chan Event
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (s *subscriber) push(e Event) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

func (s *subscriber) run() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, e := range q {
			select {
			case s.ch <- e:
			case <-s.done:
				return
			}
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}
