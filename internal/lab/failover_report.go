package lab

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Failover is the failover scenario's part of the report: the cluster
// before, the kill, the takeover as the survivors reported it, and what the
// clients saw. Times are from the SIGKILL, as precise as the lab's polling
// (pollEvery).
type Failover struct {
	Nodes        []Node `json:"nodes"`
	LeaderBefore string `json:"leader_before"`
	// SAsBefore counts the established IKE SAs each node listed once
	// every client was up.
	SAsBefore map[string]int `json:"sas_before"`
	Steady    Steady         `json:"steady"`

	Killed           string `json:"killed"`
	KilledVIP        string `json:"killed_vip"`
	KilledWasLeader  bool   `json:"killed_was_leader"`
	KilledSAs        int    `json:"killed_sas"`
	KilledSAsRFC6311 int    `json:"killed_sas_rfc6311"`

	// DetectedMS: a survivor, as leader, reported the killed node
	// unreachable; 0 if no poll saw that before the takeover.
	DetectedMS int64 `json:"detected_ms,omitempty"`
	// NewLeaderMS: a survivor led the cluster (only when the leader was
	// killed).
	NewLeaderMS int64  `json:"new_leader_ms,omitempty"`
	LeaderAfter string `json:"leader_after"`
	// TakeoverMS: a survivor reported the killed node's VIP as its own.
	NewOwner   string `json:"new_owner"`
	TakeoverMS int64  `json:"takeover_ms"`
	// Restored and Resynced count the killed node's SAs the new owner
	// lists, and those whose RFC 6311 sync the peer answered.
	Restored int `json:"restored"`
	Resynced int `json:"resynced"`
	// Behind names the peers whose SA the new owner had not restored, or
	// had not resynchronised though it negotiated RFC 6311, when the lab
	// stopped waiting.
	Behind        []string `json:"behind,omitempty"`
	RestoredMS    int64    `json:"first_restored_ms"`
	FirstResyncMS int64    `json:"first_resync_ms"`
	LastResyncMS  int64    `json:"last_resync_ms"`

	// SAsAfter counts the established IKE SAs each survivor listed at the
	// end; ClusterSAsAfter the replicated records per owner, as the leader
	// holds them.
	// NotServing is, per survivor that reported itself not serving after
	// the kill (without its VIPs: cut off from a leader, or catching up),
	// the first and last time the lab saw it so.
	NotServing map[string]Gap `json:"not_serving,omitempty"`

	SAsAfter        map[string]int `json:"sas_after"`
	ClusterSAsAfter map[string]int `json:"cluster_sas_after"`
	Replicated      Replicated     `json:"replicated_after_kill"`

	Clients  []LoadClients `json:"simulated_clients"`
	Problems []string      `json:"problems,omitempty"`
}

// Node is one cluster member.
type Node struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Address   string `json:"address"`
	VIP       string `json:"vip,omitempty"`
	Witness   bool   `json:"witness,omitempty"`
}

// Steady is the period of DPD before the kill: what the nodes probed and
// what raft replicated meanwhile. RFC 6311 peers need no replication per
// DPD; what is replicated is the records' periodic refresh.
type Steady struct {
	PeriodMS        int64  `json:"period_ms"`
	NodeDPDSent     uint64 `json:"node_dpd_sent"`
	NodeDPDAnswered uint64 `json:"node_dpd_answered"`
	Entries         uint64 `json:"raft_entries"`
	SAPuts          uint64 `json:"sa_puts"`
	SAMIDs          uint64 `json:"sa_mid_updates"` // Message IDs of SAs without RFC 6311
	TxBytes         uint64 `json:"tx_bytes"`
}

// Gap is a stretch of time after the kill, as first and last seen.
type Gap struct {
	FromMS int64 `json:"from_ms"`
	ToMS   int64 `json:"to_ms"`
}

// Replication is what the lab reads of the nodes' replication counters:
// the most entries and commands any node applied, the bytes all sent.
type Replication struct {
	Entries, SAPuts, SAMIDs, SADeletes, VIPMoves, TxBytes uint64
}

// Replicated is what raft carried from the kill to the end of the run:
// the VIP move, and the SA records the takeover and the resyncs wrote.
type Replicated struct {
	Entries   uint64 `json:"raft_entries"`
	SAPuts    uint64 `json:"sa_puts"`
	SADeletes uint64 `json:"sa_deletes"`
	VIPMoves  uint64 `json:"vip_moves"`
}

// LoadClients is one `hike load` process's summary: the simulated clients
// of one node's VIP. They carry no data traffic; what they lost shows as
// failures, SAs down at the end and DPD timeouts.
type LoadClients struct {
	Group        string           `json:"group"`
	Namespace    string           `json:"namespace"`
	VIP          string           `json:"vip"`
	Node         string           `json:"node"` // the VIP's node at the start
	Clients      int              `json:"clients"`
	Established  int64            `json:"established"`
	Failed       int64            `json:"failed"`
	Pending      int64            `json:"pending"`
	UpAtEnd      int64            `json:"up_at_end"`
	Failures     map[string]int64 `json:"failures_by_reason,omitempty"`
	DPDSent      uint64           `json:"dpd_sent"`
	DPDCompleted uint64           `json:"dpd_completed"`
	DPDTimeouts  uint64           `json:"dpd_timeouts"`
	ResyncsSeen  uint64           `json:"resyncs_answered"`
	Retransmits  uint64           `json:"retransmits"`
}

// total sums the groups.
func total(gs []LoadClients) LoadClients {
	var t LoadClients
	for _, g := range gs {
		t.Clients += g.Clients
		t.Established += g.Established
		t.Failed += g.Failed
		t.Pending += g.Pending
		t.UpAtEnd += g.UpAtEnd
		t.DPDSent += g.DPDSent
		t.DPDCompleted += g.DPDCompleted
		t.DPDTimeouts += g.DPDTimeouts
		t.ResyncsSeen += g.ResyncsSeen
		t.Retransmits += g.Retransmits
	}
	return t
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// maxGap is the longest a strongSwan client's traffic may stop: the
// mission's promise that traffic through each tunnel resumes within 3 s.
const maxGap = 3 * time.Second

// judgeFailover lists what went wrong, judged against what the cluster
// promises: the killed node's VIP and every SA move to a survivor, every
// RFC 6311 SA resynchronises, no client loses its SA or sees DPD fail, and
// strongSwan clients keep their IKE SA, go on with DPD and see their
// traffic resume within maxGap.
func judgeFailover(r *Report, o Options) {
	f := r.Failover
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	if f.NewOwner == "" {
		add("no survivor took %s's VIP %s over", f.Killed, f.KilledVIP)
	}
	if f.Restored < f.KilledSAs {
		add("%s lists %d of the %d SAs %s served", dash(f.NewOwner), f.Restored, f.KilledSAs, f.Killed)
	}
	if f.Resynced < f.KilledSAsRFC6311 {
		add("%d of %d RFC 6311 SAs resynchronised%s", f.Resynced, f.KilledSAsRFC6311, peers(f.Behind))
	}
	if before, after := sum(f.SAsBefore), sum(f.SAsAfter); after != before {
		add("the survivors serve %d IKE SAs, the cluster served %d before the kill", after, before)
	}
	if f.ClusterSAsAfter != nil {
		if n := f.ClusterSAsAfter[f.Killed]; n > 0 {
			add("the cluster still records %d SAs as %s's", n, f.Killed)
		}
	}
	t := total(f.Clients)
	if len(f.Clients) == 0 && o.Clients > 0 {
		add("no summary from the simulated clients")
	} else if o.Clients > 0 {
		if t.Clients != o.Clients || t.Established != int64(o.Clients) {
			add("%d of %d simulated clients established", t.Established, o.Clients)
		}
		if t.UpAtEnd != t.Established {
			add("simulated clients lost %d IKE SAs", t.Established-t.UpAtEnd)
		}
		if t.DPDTimeouts > 0 {
			add("simulated clients saw %d DPD timeouts", t.DPDTimeouts)
		}
		if t.Failed > 0 {
			add("%d simulated clients failed", t.Failed)
		}
		var killedClients int
		for _, g := range f.Clients {
			if g.Node == f.Killed {
				killedClients += g.Clients
			}
		}
		if t.ResyncsSeen < uint64(min(killedClients, f.KilledSAsRFC6311)) {
			add("simulated clients answered %d resyncs, %d of them were on %s", t.ResyncsSeen, killedClients, f.Killed)
		}
	}
	for _, c := range r.Clients {
		switch {
		case c.IKE.State == "":
			add("strongSwan %s: no IKE SA at the end", c.Name)
		case c.IKE.State != "ESTABLISHED":
			add("strongSwan %s: IKE SA state %s", c.Name, c.IKE.State)
		case !c.DPD.SameIKESA:
			add("strongSwan %s: the IKE SA changed", c.Name)
		}
		if c.IKE.State != "" && c.DPD.Exchanges() == 0 {
			add("strongSwan %s: no DPD exchange after the kill", c.Name)
		}
		if c.Ping.Sent == 0 || c.Ping.Received == 0 {
			add("strongSwan %s: no ping answered through the tunnel", c.Name)
		} else if gap := time.Duration(c.Ping.LongestGapMS) * time.Millisecond; gap > maxGap {
			add("strongSwan %s: traffic stopped for %s", c.Name, ms(c.Ping.LongestGapMS))
		}
	}
	f.Problems = p
}

// writeFailover renders the failover part of a report.
func writeFailover(b *strings.Builder, r *Report) {
	f := r.Failover
	for i, n := range f.Nodes {
		label := "cluster"
		if i > 0 {
			label = ""
		}
		role := ""
		if n.ID == f.LeaderBefore {
			role = ", leader"
		}
		what := "VIP " + n.VIP
		if n.Witness {
			what = "witness (votes only)"
		}
		fmt.Fprintf(b, "%-11s%s at %s, %s, namespace %s%s\n", label, n.ID, n.Address, what, n.Namespace, role)
	}
	if f.SAsBefore != nil {
		fmt.Fprintf(b, "%-11s%s\n", "before", perNode(f.SAsBefore))
	}
	if s := f.Steady; s.PeriodMS > 0 {
		fmt.Fprintf(b, "%-11s%s of DPD: the nodes sent %d requests, %d answered; raft replicated %d entries (%d SA puts, %d Message ID updates), the nodes sent %s\n",
			"steady", ms(s.PeriodMS), s.NodeDPDSent, s.NodeDPDAnswered, s.Entries, s.SAPuts, s.SAMIDs, bytes(s.TxBytes))
	}
	if f.Killed != "" {
		role := "a follower"
		if f.KilledWasLeader {
			role = "the leader"
		}
		fmt.Fprintf(b, "%-11s%s (%s, VIP %s, %d IKE SAs, %d with RFC 6311): link down, SIGKILL\n",
			"kill", f.Killed, role, f.KilledVIP, f.KilledSAs, f.KilledSAsRFC6311)
	}
	if f.Killed != "" {
		var ev []string
		if f.DetectedMS > 0 {
			ev = append(ev, "seen unreachable after "+ms(f.DetectedMS))
		}
		if f.NewLeaderMS > 0 {
			ev = append(ev, fmt.Sprintf("new leader %s after %s", f.LeaderAfter, ms(f.NewLeaderMS)))
		}
		if f.NewOwner != "" {
			ev = append(ev, fmt.Sprintf("VIP %s taken over by %s after %s", f.KilledVIP, f.NewOwner, ms(f.TakeoverMS)))
		} else {
			ev = append(ev, "VIP not taken over")
		}
		fmt.Fprintf(b, "%-11s%s\n", "takeover", strings.Join(ev, ", "))
	}
	if f.Killed != "" && f.SAsAfter != nil {
		var ns []string
		for _, id := range slices.Sorted(maps.Keys(f.NotServing)) {
			g := f.NotServing[id]
			ns = append(ns, fmt.Sprintf("%s not serving from %s to %s after the kill", id, ms(g.FromMS), ms(g.ToMS)))
		}
		if len(ns) == 0 {
			ns = append(ns, "every survivor served throughout")
		}
		fmt.Fprintf(b, "%-11s%s\n", "", strings.Join(ns, "; "))
	}
	if f.NewOwner != "" {
		fmt.Fprintf(b, "%-11s%d of %d SAs restored on %s", "resync", f.Restored, f.KilledSAs, f.NewOwner)
		if f.RestoredMS > 0 {
			fmt.Fprintf(b, ", listed %s after the kill", ms(f.RestoredMS))
		}
		switch {
		case f.KilledSAsRFC6311 == 0:
			b.WriteString("; none negotiated RFC 6311: their counters come from the replicated records")
		case f.Resynced == 0:
			fmt.Fprintf(b, "; none of %d resynchronised (RFC 6311)", f.KilledSAsRFC6311)
		default:
			fmt.Fprintf(b, "; %d of %d resynchronised (RFC 6311), the first %s and the last %s after the kill",
				f.Resynced, f.KilledSAsRFC6311, ms(f.FirstResyncMS), ms(f.LastResyncMS))
		}
		b.WriteString("\n")
	}
	if f.SAsAfter != nil {
		fmt.Fprintf(b, "%-11s%s", "after", perNode(f.SAsAfter))
		if f.ClusterSAsAfter != nil {
			fmt.Fprintf(b, "; replicated records by owner: %s", perNode(f.ClusterSAsAfter))
		}
		b.WriteString("\n")
		rp := f.Replicated
		fmt.Fprintf(b, "%-11sfrom the kill to the end raft replicated %d entries: %d VIP move%s, %d SA puts, %d SA deletes\n",
			"", rp.Entries, rp.VIPMoves, plural(int(rp.VIPMoves)), rp.SAPuts, rp.SADeletes)
	}
	for i, g := range f.Clients {
		label := "clients"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(b, "%-11s%s -> %s (%s): %s\n", label, g.Group, g.VIP, g.Node, loadLine(g))
	}
	if len(f.Clients) > 1 {
		fmt.Fprintf(b, "%-11sall: %s\n", "", loadLine(total(f.Clients)))
	}
	if len(f.Clients) > 0 {
		fmt.Fprintf(b, "%-11ssimulated clients carry no data traffic: their losses are failures, SAs down and DPD timeouts\n", "")
	}
	for i, c := range r.Clients {
		label := "strongSwan"
		if i > 0 {
			label = ""
		}
		state := c.IKE.State
		if state == "" {
			state = "no IKE SA"
		}
		fmt.Fprintf(b, "%-11s%s -> %s: %s", label, c.Name, dash(c.VIP), state)
		if c.IKE.SPIi != "" && f.SAsAfter != nil { // read again after the kill
			same := "SPIs changed"
			if c.DPD.SameIKESA {
				same = "same SPIs"
			}
			fmt.Fprintf(b, " %s/%s (%s)", c.IKE.SPIi, c.IKE.SPIr, same)
		}
		if p := c.Ping; p.Sent > 0 {
			fmt.Fprintf(b, "; ping %d/%d answered, %d lost, longest gap %s", p.Received, p.Sent, p.Sent-p.Received, ms(p.LongestGapMS))
		}
		if f.SAsAfter != nil {
			fmt.Fprintf(b, "; DPD after the kill: %d from the cluster, %d to it", c.DPD.FromGateway, c.DPD.FromClient)
			if c.DPD.Unanswered > 0 {
				fmt.Fprintf(b, ", %d unanswered", c.DPD.Unanswered)
			}
		}
		b.WriteString("\n")
	}
	for _, p := range f.Problems {
		fmt.Fprintf(b, "PROBLEM    %s\n", p)
	}
}

// peers lists a few peers for a problem's text.
func peers(ids []string) string {
	const most = 5
	switch {
	case len(ids) == 0:
		return ""
	case len(ids) > most:
		return fmt.Sprintf("; behind: %s and %d more", strings.Join(ids[:most], ", "), len(ids)-most)
	}
	return "; behind: " + strings.Join(ids, ", ")
}

func loadLine(g LoadClients) string {
	s := fmt.Sprintf("%d/%d established, %d up at the end", g.Established, g.Clients, g.UpAtEnd)
	if g.Failed > 0 || g.Pending > 0 {
		s += fmt.Sprintf(", %d failed, %d pending", g.Failed, g.Pending)
	}
	s += fmt.Sprintf("; DPD %d sent, %d completed, %d timeouts; %d resyncs answered, %d retransmits",
		g.DPDSent, g.DPDCompleted, g.DPDTimeouts, g.ResyncsSeen, g.Retransmits)
	for _, k := range slices.Sorted(maps.Keys(g.Failures)) {
		s += fmt.Sprintf("; %d × %s", g.Failures[k], k)
	}
	return s
}

// perNode spells counts per node in node order, with their sum.
func perNode(m map[string]int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if len(a) != len(b) { // node10 after node9
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return fmt.Sprintf("%s (%d IKE SAs)", strings.Join(parts, ", "), sum(m))
}

func bytes(n uint64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// clusterStatus is what a node's control socket answers on GET
// /v1/cluster (`hike cluster status --json`), as far as the lab reads it.
type clusterStatus struct {
	Node    string         `json:"node"`
	Leader  string         `json:"leader"`
	Serving bool           `json:"serving"`
	Term    uint64         `json:"term"`
	Members []memberStatus `json:"members"`
	VIPs    []struct {
		VIP   string `json:"vip"`
		Owner string `json:"owner"`
		Home  string `json:"home"`
	} `json:"vips"`
	SAs         map[string]int `json:"sas"`
	Replication struct {
		Entries   uint64 `json:"entries"`
		SAPuts    uint64 `json:"sa_puts"`
		SAMIDs    uint64 `json:"sa_mids"`
		SADeletes uint64 `json:"sa_deletes"`
		VIPMoves  uint64 `json:"vip_moves"`
		TxBytes   uint64 `json:"tx_bytes"`
		RxBytes   uint64 `json:"rx_bytes"`
	} `json:"replication"`
}

func parseStatus(b []byte) (*clusterStatus, error) {
	var st clusterStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("cluster status: %w", err)
	}
	return &st, nil
}

// owner is the node serving vip, "" if none or unknown.
func (st *clusterStatus) owner(vip netip.Addr) string {
	for _, v := range st.VIPs {
		if a, err := netip.ParseAddr(v.VIP); err == nil && a == vip {
			return v.Owner
		}
	}
	return ""
}

type memberStatus struct {
	ID        string `json:"id"`
	Reachable bool   `json:"reachable"`
	Leader    bool   `json:"leader"`
}

func (st *clusterStatus) member(id string) *memberStatus {
	for i := range st.Members {
		if st.Members[i].ID == id {
			return &st.Members[i]
		}
	}
	return nil
}

var (
	pingReply       = regexp.MustCompile(`(?m)^\d+ bytes from .*icmp_seq=(\d+) `)
	pingTransmitted = regexp.MustCompile(`(\d+) packets transmitted`)
)

// longestGap reads iputils ping output (one line per reply) and returns
// the longest stretch without a reply, in milliseconds, counted in echo
// requests sent every interval: from the start, between replies, and after
// the last reply until the last request.
func longestGap(out string, interval time.Duration) int64 {
	sent := 0
	if m := pingTransmitted.FindStringSubmatch(out); m != nil {
		sent, _ = strconv.Atoi(m[1])
	}
	last, gap := 0, 0 // sequence numbers start at 1
	for _, m := range pingReply.FindAllStringSubmatch(out, -1) {
		seq, err := strconv.Atoi(m[1])
		if err != nil || seq <= last {
			continue // a duplicate, or the 16-bit counter wrapped
		}
		gap = max(gap, seq-last-1)
		last = seq
	}
	if sent > last {
		gap = max(gap, sent-last)
	}
	return int64(gap) * interval.Milliseconds()
}
