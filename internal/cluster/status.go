package cluster

import (
	"net/netip"
	"slices"
	"time"
)

// Status is this node's view of the cluster, for `hike cluster status`
// and the control socket. It is a copy; nothing in it changes later.
type Status struct {
	Node         string         `json:"node"`
	Leader       string         `json:"leader"` // "" while there is none
	Serving      bool           `json:"serving"`
	Witness      bool           `json:"witness"`
	Term         uint64         `json:"term"`
	AppliedIndex uint64         `json:"applied_index"`
	Members      []MemberStatus `json:"members"` // the voters, in configuration order
	VIPs         []VIPStatus    `json:"vips"`    // by address
	// SAs counts the SA records in the replicated state per owner.
	SAs         map[string]int    `json:"sas"`
	Replication ReplicationStatus `json:"replication"`
	// Takeovers are the last VIPs this node took over, newest last. The
	// node only moves VIPs; the daemon that serves them fills this in.
	Takeovers []Takeover `json:"takeovers,omitempty"`
}

// Takeover is what a member did when a VIP became its own: it put the
// address up, restored the SAs that live on it and resynchronised them.
type Takeover struct {
	VIP     netip.Addr `json:"vip"`
	Started time.Time  `json:"started"` // when this node saw the VIP become its own
	SAs     int        `json:"sas"`     // SAs restored
	Synced  int        `json:"synced"`  // of which may send again (synchronised, or needing no sync)
	Failed  int        `json:"failed"`  // RFC 6311 syncs that failed (those SAs are deleted)
	// OpenedMS is the time from Started to the VIP's records decrypted,
	// RestoredMS to the last SA restored,
	// SyncedMS to the last SA synced or failed (-1 while under way).
	OpenedMS   int64 `json:"opened_ms"`
	RestoredMS int64 `json:"restored_ms"`
	SyncedMS   int64 `json:"synced_ms"`
}

// MemberStatus is one voter as this node sees it. The leader hears from
// every member (the answers to its heartbeats); a follower hears only from
// the leader, so for the other members it does not know: LastContactMS is
// then -1 and Reachable false.
type MemberStatus struct {
	ID            string `json:"id"`
	Address       string `json:"address"`
	Witness       bool   `json:"witness"`
	Leader        bool   `json:"leader"`
	Reachable     bool   `json:"reachable"`
	LastContactMS int64  `json:"last_contact_ms"`
}

// VIPStatus is one VIP: who serves it now and whose configuration lists
// it (where Handback returns it).
type VIPStatus struct {
	VIP   netip.Addr `json:"vip"`
	Owner string     `json:"owner"` // "" while unassigned
	Home  string     `json:"home"`  // "" for a VIP no peer configures
}

// ReplicationStatus counts what this node did since it started: the SA and
// VIP commands its copy of the state applied from the log (replayed ones
// included; a snapshot restore counts nothing), and the bytes its raft and
// forwarding connections carried on the wire (TLS included).
type ReplicationStatus struct {
	Entries   uint64 `json:"entries"`
	SAPuts    uint64 `json:"sa_puts"`
	SADeletes uint64 `json:"sa_deletes"`
	// SAMIDs counts Message ID updates (ApplyMIDs) applied.
	SAMIDs   uint64 `json:"sa_mids"`
	VIPMoves uint64 `json:"vip_moves"`
	// SARefused counts SA writes refused because the writer no longer
	// served the SA: late writes across a takeover or handback.
	SARefused  uint64 `json:"sa_refused"`
	EntryBytes uint64 `json:"entry_bytes"`
	TxBytes    uint64 `json:"tx_bytes"`
	RxBytes    uint64 `json:"rx_bytes"`
}

// Status returns this node's view of the cluster. It reads local state
// only and does not block on the network.
func (n *Node) Status() Status {
	now := time.Now()
	st := Status{
		Node:    n.opts.Cluster.NodeID,
		Serving: n.Serving(),
		Witness: n.self.Witness,
		Members: []MemberStatus{},
		SAs:     map[string]int{},
	}
	fs := &n.fsm.stats
	st.Replication = ReplicationStatus{
		Entries: fs.entries.Load(), EntryBytes: fs.entryBytes.Load(),
		SAPuts: fs.saPuts.Load(), SADeletes: fs.saDeletes.Load(), SAMIDs: fs.saMIDs.Load(), VIPMoves: fs.vipMoves.Load(),
		SARefused: fs.saStale.Load(),
	}
	if n.isStarted() {
		st.Leader = n.Leader()
		st.Term = n.raft.CurrentTerm()
		st.AppliedIndex = n.raft.AppliedIndex()
		st.Replication.TxBytes = n.stream.tx.Load()
		st.Replication.RxBytes = n.stream.rx.Load()
		for _, m := range n.Members() {
			ms := MemberStatus{ID: m.ID, Address: m.Address, Witness: m.Witness, Leader: m.ID == st.Leader, LastContactMS: -1}
			if t, ok := n.contact(m.ID, st.Leader, now); ok {
				ms.LastContactMS = max(now.Sub(t).Milliseconds(), 0)
				ms.Reachable = now.Sub(t) < n.opts.FailAfter/2
			}
			st.Members = append(st.Members, ms)
		}
	}

	home := n.homes()
	owners := n.VIPs()
	for a, h := range home {
		st.VIPs = append(st.VIPs, VIPStatus{VIP: a, Owner: owners[a], Home: h})
	}
	for a, o := range owners {
		if _, ok := home[a]; !ok {
			st.VIPs = append(st.VIPs, VIPStatus{VIP: a, Owner: o})
		}
	}
	slices.SortFunc(st.VIPs, func(a, b VIPStatus) int { return a.VIP.Compare(b.VIP) })
	if st.VIPs == nil {
		st.VIPs = []VIPStatus{}
	}

	n.fsm.mu.RLock()
	for o, c := range n.fsm.owned {
		if c > 0 {
			st.SAs[o] = c
		}
	}
	n.fsm.mu.RUnlock()
	return st
}

// isStarted reports whether Start has set up raft and the transport.
func (n *Node) isStarted() bool {
	select {
	case <-n.started:
		return true
	default:
		return false
	}
}

// homes maps each configured VIP to the node whose configuration lists it.
func (n *Node) homes() map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for _, p := range n.opts.Cluster.Peers {
		for _, v := range p.VIPs {
			m[v.Addr().Unmap()] = p.ID
		}
	}
	return m
}

// contact returns when this node last heard from member id, if it knows:
// the leader hears every member (the answers to its heartbeats and
// appends), a follower only the leader.
func (n *Node) contact(id, leader string, now time.Time) (time.Time, bool) {
	switch {
	case id == n.opts.Cluster.NodeID:
		return now, true
	case leader == n.opts.Cluster.NodeID:
		t := n.stream.lastSeen(id)
		return t, !t.IsZero()
	case id == leader:
		t := n.raft.LastContact()
		return t, !t.IsZero()
	}
	return time.Time{}, false
}
