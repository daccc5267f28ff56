package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hike-vpn/hike/internal/cluster"
	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/vip"
)

// How a cluster member feeds raft. Structural changes and the Message IDs
// of SAs without RFC 6311 are pushed at most flushInterval after they
// happen (the 100 ms bound); ESP counters, which only feed the rate
// estimate of a successor, are looked at once a second.
const (
	flushInterval   = 100 * time.Millisecond
	countersEvery   = time.Second
	reconcileEvery  = 250 * time.Millisecond
	restoreChunk    = 250
	restoreInterval = 10 * time.Millisecond // 25,000 SAs/s, each one sync request
)

// member is this daemon's part in an HA cluster: it serves the VIPs raft
// gives it and no other, restores the SAs that come with a VIP, and
// replicates the changes of the SAs it serves.
//
// A VIP is in two states here. Held: its SAs live in this engine, because
// raft gave it to this node. Up: its address is on an interface, because
// this node holds it and is in contact with the majority. Losing the
// majority takes the address down at once (no VIP served twice) but keeps
// the SAs: a leader election is over in about a second, and the VIP comes
// back up with every SA as it was. Only a move of the VIP to another node,
// seen once contact is back, releases them.
type member struct {
	d      *Daemon
	node   *cluster.Node
	self   string
	ifname string
	vips   map[netip.Addr]netip.Prefix // every configured VIP, as added to the interface

	mu        sync.Mutex
	held      map[netip.Addr]bool
	up        map[netip.Addr]bool
	takeovers []*takeover // the last maxTakeovers, newest last

	// Changes that raft has not taken yet, newest per SA; a delete
	// replaces a put. flushMu serialises the replicator and stop.
	flushMu  sync.Mutex
	pendPut  map[cluster.SAKey]ike.Record
	pendMIDs map[cluster.SAKey]ike.MIDs
	pendDel  map[cluster.SAKey]bool
}

func newMember(d *Daemon) (*member, error) {
	c := d.cfg.Cluster
	m := &member{d: d, self: c.NodeID, ifname: c.Interface, vips: map[netip.Addr]netip.Prefix{},
		held: map[netip.Addr]bool{}, up: map[netip.Addr]bool{},
		pendPut: map[cluster.SAKey]ike.Record{}, pendMIDs: map[cluster.SAKey]ike.MIDs{}, pendDel: map[cluster.SAKey]bool{}}
	for _, p := range c.Peers {
		for _, v := range p.VIPs {
			m.vips[v.Addr()] = v
		}
	}
	node, err := cluster.New(cluster.Options{Cluster: c, Logger: d.log.With("part", "cluster"), Release: m.handOver})
	if err != nil {
		return nil, err
	}
	m.node = node
	return m, nil
}

// start clears the VIPs that an earlier run of this node left on the
// interface (a crash leaves them; raft decides who serves them now), joins
// the cluster and runs until ctx ends.
func (m *member) start(ctx context.Context) error {
	// Removing the primary address of a subnet removes its secondaries
	// too unless they are promoted; a VIP must never take another with it.
	if m.ifname != "" {
		f := "/proc/sys/net/ipv4/conf/" + m.ifname + "/promote_secondaries"
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			m.d.log.Warn("cluster: cannot set promote_secondaries", "err", err)
		}
	}
	// Any VIP may come here in a takeover: each must have an interface
	// now, not only when a node has failed.
	for _, p := range m.vips {
		if _, err := m.ifFor(p); err != nil {
			return fmt.Errorf("cluster: VIP %s: %w", p, err)
		}
		m.remove(p)
	}
	if err := m.node.Start(ctx); err != nil {
		return err
	}
	events, cancel := m.node.Subscribe()
	go func() {
		defer cancel()
		m.run(ctx, events)
	}()
	go m.replicate(ctx)
	return nil
}

// run reconciles the VIPs this node serves with raft's view on every event
// and periodically, since events are edges and may be missed.
func (m *member) run(ctx context.Context, events <-chan cluster.Event) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		m.reconcile()
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			if e.Kind == cluster.EventServing {
				m.d.log.Info("cluster: contact with the majority", "serving", e.Serving)
			}
		case <-t.C:
		}
	}
}

func (m *member) reconcile() {
	serving := m.node.Serving()
	owners := m.node.VIPs()
	for a, p := range m.vips {
		owned := owners[a] == m.self
		m.mu.Lock()
		held, up := m.held[a], m.up[a]
		m.mu.Unlock()
		switch {
		case owned && serving && !held:
			m.take(a, p)
		case owned && serving && !up:
			m.addAddr(a, p)
		case owned && !serving && up:
			m.d.log.Warn("cluster: lost the majority; VIP down, its SAs kept", "vip", p)
			m.setUp(a, false)
			m.remove(p)
		case !owned && serving && held:
			// A node out of contact cannot know that a VIP moved; one in
			// contact has applied the move.
			m.release(a, p, owners[a])
		case !owned && up:
			m.setUp(a, false)
			m.remove(p)
		}
	}
}

func (m *member) setUp(a netip.Addr, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if up {
		m.up[a] = true
	} else {
		delete(m.up, a)
	}
}

// addAddr puts a VIP's address up and announces it.
func (m *member) addAddr(a netip.Addr, p netip.Prefix) bool {
	ifname, err := m.ifFor(p)
	if err == nil {
		err = vip.Add(ifname, p)
	}
	if err != nil {
		m.d.log.Error("cluster: cannot add VIP", "vip", p, "err", err)
		return false
	}
	m.setUp(a, true)
	// One announcement can be lost; three, 100 ms apart, as routers
	// commonly expect after a failover.
	go func() {
		for range 2 {
			time.Sleep(100 * time.Millisecond)
			if err := vip.Announce(ifname, a); err != nil {
				m.d.log.Debug("cluster: VIP announcement", "vip", a, "err", err)
			}
		}
	}()
	return true
}

// take starts serving a VIP: the address first (the SAs' resync requests
// leave from it), then the SAs that live on it, restored as stale because
// their previous server may have exchanged messages after its last record.
func (m *member) take(a netip.Addr, p netip.Prefix) {
	start := time.Now()
	if !m.addAddr(a, p) {
		return
	}
	m.mu.Lock()
	m.held[a] = true
	m.mu.Unlock()
	mine, err := m.node.RecordsOn(m.self, a)
	if err != nil {
		m.d.log.Warn("cluster: some records do not open", "err", err)
	}
	tk := m.newTakeover(a, start)
	tk.opened()
	opts := ike.RestoreOptions{Stale: true, FreshReqIDs: true, Synced: tk.synced}
	restored := 0
	for len(mine) > 0 {
		n := min(restoreChunk, len(mine))
		k, err := m.d.engine.Restore(mine[:n], opts)
		if err != nil {
			m.d.log.Warn("cluster: some SAs could not be restored", "vip", a, "err", err)
		}
		restored += k
		mine = mine[n:]
		if len(mine) > 0 {
			time.Sleep(restoreInterval)
		}
	}
	tk.restoredAll(restored)
	m.d.log.Info("cluster: serving VIP", "vip", p, "sas_restored", restored, "took", time.Since(start).Round(time.Millisecond))
	// In a cluster a connection starts from the node that serves its
	// local address, so that it is initiated once and not by every node.
	m.d.startConnections(func(c *config.Connection) bool { return slices.Contains(c.Local.Addrs, a) })
}

// handOver is the cluster's Release hook: a VIP this node serves goes to
// another running node, which adds it once this returns.
func (m *member) handOver(a netip.Addr) {
	m.mu.Lock()
	held, up := m.held[a], m.up[a]
	m.mu.Unlock()
	if held || up {
		m.release(a, m.vips[a], "handback")
	}
}

// release lets a VIP go to its new owner without a word to its peers:
// their SAs live on there.
func (m *member) release(a netip.Addr, p netip.Prefix, owner string) {
	m.mu.Lock()
	delete(m.held, a)
	delete(m.up, a)
	m.mu.Unlock()
	m.remove(p)
	n := m.d.engine.Release(a)
	m.d.log.Info("cluster: VIP released", "vip", p, "to", owner, "sas_released", n)
}

// ifFor names the interface a VIP goes on: the configured one, or the
// one with an address in the VIP's subnet.
func (m *member) ifFor(p netip.Prefix) (string, error) {
	if m.ifname != "" {
		if _, err := net.InterfaceByName(m.ifname); err != nil {
			return "", fmt.Errorf("cluster.interface %q: %w", m.ifname, err)
		}
		return m.ifname, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ones, _ := ipn.Mask.Size()
			own := netip.PrefixFrom(ip.Unmap(), ones).Masked()
			if ip.Unmap() != p.Addr() && own.Contains(p.Addr()) {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface has an address in %s's subnet; set cluster.interface", p)
}

// remove takes a VIP off wherever it is, if anywhere: a crash leaves the
// VIPs it served on the interface, and raft decides who serves them now.
func (m *member) remove(p netip.Prefix) {
	ifs, err := net.Interfaces()
	if err != nil {
		m.d.log.Error("cluster: cannot list interfaces", "err", err)
		return
	}
	for _, ifc := range ifs {
		if ok, _ := vip.Present(ifc.Name, p.Addr()); !ok {
			continue
		}
		if err := vip.Remove(ifc.Name, p); err != nil {
			m.d.log.Error("cluster: cannot remove VIP", "vip", p, "interface", ifc.Name, "err", err)
		}
	}
}

// writable says whether an SA living on local may be written by this
// node: one on a VIP only while this node holds it and raft says it owns
// it, so that a late write never takes an SA back from the VIP's new
// owner.
func (m *member) writable(local netip.Addr, owners map[netip.Addr]string) bool {
	local = local.Unmap()
	if _, isVIP := m.vips[local]; !isVIP {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[local] && owners[local] == m.self
}

// replicate pushes the engine's changes into raft every flushInterval. A
// push waits for its commit, so a slow raft coalesces more into the next.
func (m *member) replicate(ctx context.Context) {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	lastCounters := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			counters := now.Sub(lastCounters) >= countersEvery
			if counters {
				lastCounters = now
			}
			m.flush(ctx, m.d.engine.TakeChanges(counters))
		}
	}
}

func (m *member) flush(ctx context.Context, ch ike.Changes) {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	for _, k := range ch.Deleted {
		ck := cluster.SAKey{SPIi: k.SPIi, SPIr: k.SPIr}
		delete(m.pendPut, ck)
		delete(m.pendMIDs, ck)
		m.pendDel[ck] = true
	}
	for _, x := range ch.MIDs {
		m.pendMIDs[cluster.SAKey{SPIi: x.Key.SPIi, SPIr: x.Key.SPIr}] = x
	}
	for _, r := range ch.Put {
		// The record carries the newest Message IDs.
		ck := cluster.SAKey{SPIi: r.SPIi, SPIr: r.SPIr}
		delete(m.pendDel, ck)
		delete(m.pendMIDs, ck)
		m.pendPut[ck] = r
	}
	if len(m.pendPut) > 0 {
		puts := make([]ike.Record, 0, len(m.pendPut))
		owners := m.node.VIPs()
		for k, r := range m.pendPut {
			if m.writable(r.Local.Addr(), owners) {
				puts = append(puts, r)
			} else {
				delete(m.pendPut, k)
			}
		}
		if err := m.node.ApplyRecords(ctx, puts); err != nil {
			if !errors.Is(err, context.Canceled) {
				m.d.log.Warn("cluster: cannot replicate SA records; will retry", "sas", len(puts), "err", err)
			}
			return
		}
		clear(m.pendPut)
	}
	if len(m.pendMIDs) > 0 {
		// The cluster refuses the Message IDs of SAs this node no longer
		// serves; they need no filter here.
		mids := make([]ike.MIDs, 0, len(m.pendMIDs))
		for _, x := range m.pendMIDs {
			mids = append(mids, x)
		}
		if err := m.node.ApplyMIDs(ctx, mids); err != nil {
			if !errors.Is(err, context.Canceled) {
				m.d.log.Warn("cluster: cannot replicate Message IDs; will retry", "sas", len(mids), "err", err)
			}
			return
		}
		clear(m.pendMIDs)
	}
	if len(m.pendDel) > 0 {
		keys := make([]cluster.SAKey, 0, len(m.pendDel))
		for k := range m.pendDel {
			keys = append(keys, k)
		}
		if err := m.node.DeleteSAs(ctx, keys); err != nil {
			if !errors.Is(err, context.Canceled) {
				m.d.log.Warn("cluster: cannot replicate SA deletes; will retry", "sas", len(keys), "err", err)
			}
			return
		}
		clear(m.pendDel)
	}
}

// stop leaves the VIPs to the cluster: it pushes what is pending so that a
// successor starts from the newest records, removes the addresses (a
// stopped node must not answer for them), and closes the raft node, which
// the others then see as failed.
func (m *member) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m.flush(ctx, m.d.engine.TakeChanges(true))
	m.mu.Lock()
	up := m.up
	m.up = map[netip.Addr]bool{}
	m.mu.Unlock()
	for a := range up {
		m.remove(m.vips[a])
	}
	if err := m.node.Close(); err != nil {
		m.d.log.Warn("cluster: close", "err", err)
	}
}

// maxTakeovers bounds the takeovers `hike cluster status` reports.
const maxTakeovers = 16

// takeover follows one VIP's SAs from restore to the end of their syncs.
type takeover struct {
	log func(msg string, args ...any)

	mu    sync.Mutex
	st    cluster.Takeover
	total int // SAs restored; -1 until the last chunk is in
}

func (m *member) newTakeover(a netip.Addr, start time.Time) *takeover {
	tk := &takeover{log: m.d.log.Info, total: -1,
		st: cluster.Takeover{VIP: a, Started: start, SyncedMS: -1}}
	m.mu.Lock()
	m.takeovers = append(m.takeovers, tk)
	if len(m.takeovers) > maxTakeovers {
		m.takeovers = m.takeovers[1:]
	}
	m.mu.Unlock()
	return tk
}

// synced is the engine's RestoreOptions.Synced: it runs with the SA
// locked, so it only counts.
func (tk *takeover) synced(_ ike.SAKey, err error) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if err != nil {
		tk.st.Failed++
	} else {
		tk.st.Synced++
	}
	tk.check()
}

func (tk *takeover) opened() {
	tk.mu.Lock()
	tk.st.OpenedMS = time.Since(tk.st.Started).Milliseconds()
	tk.mu.Unlock()
}

func (tk *takeover) restoredAll(n int) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.total, tk.st.SAs = n, n
	tk.st.RestoredMS = time.Since(tk.st.Started).Milliseconds()
	tk.check()
}

// check notes the end of the takeover; tk.mu is held.
func (tk *takeover) check() {
	if tk.total < 0 || tk.st.SyncedMS >= 0 || tk.st.Synced+tk.st.Failed < tk.total {
		return
	}
	tk.st.SyncedMS = time.Since(tk.st.Started).Milliseconds()
	// Logged from a goroutine: this may run on an engine worker.
	st := tk.st
	go tk.log("cluster: takeover complete", "vip", st.VIP, "sas", st.SAs, "synced", st.Synced, "failed", st.Failed,
		"restored_ms", st.RestoredMS, "synced_ms", st.SyncedMS)
}

// status is the cluster's status with this member's takeovers.
func (m *member) status() cluster.Status {
	st := m.node.Status()
	m.mu.Lock()
	tks := slices.Clone(m.takeovers)
	m.mu.Unlock()
	for _, tk := range tks {
		tk.mu.Lock()
		st.Takeovers = append(st.Takeovers, tk.st)
		tk.mu.Unlock()
	}
	return st
}
