package ike

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
)

// Replication of SA records to a cluster. The daemon polls TakeChanges
// several times a second and commits what it returns, so the cost of a
// poll must follow what changed, not how many SAs there are: an SA that
// changes joins a list once, however often it changes before the next
// poll, and the poll records only the SAs on the list.
//
// What counts as a change is what a successor needs to continue the SA
// without the peer noticing. For a peer that does RFC 6311 that excludes
// the Message IDs of ordinary exchanges: ours are covered by reservations,
// the peer's are repaired by the sync. A DPD then costs the cluster
// nothing, which is what makes a replicated concentrator affordable at
// tens of thousands of mostly idle clients.

// SAKey names an IKE SA across the cluster: its two SPIs, as in a Record.
type SAKey struct{ SPIi, SPIr uint64 }

// Changes are the records to replicate since the last TakeChanges: Put
// holds fresh records of SAs that changed, Deleted the keys of SAs that
// ended. No key is in both.
type Changes struct {
	Put     []Record
	Deleted []SAKey
	// MIDs are the Message IDs of SAs without RFC 6311 whose record is
	// otherwise unchanged: a few octets where a record is a kilobyte,
	// for what such SAs do most, exchange DPD.
	MIDs []MIDs
}

// MIDs are an SA's Message IDs as its record would give them: NextSend
// is the Message ID of the request in flight, if any, else the next one.
type MIDs struct {
	Key                SAKey
	NextSend, NextRecv uint32
}

// counterRecordAge is how old the last record of an RFC 6311 SA may get
// before moving ESP counters are worth a new one: younger than
// maxEstimateAge, so that a successor can always estimate its jumps from
// the traffic rate.
const counterRecordAge = 10 * time.Second

// replState is the engine's side of replication.
type replState struct {
	// on is set by the first TakeChanges: until then nobody consumes the
	// list, which would otherwise hold every SA that ever changed.
	on atomic.Bool
	// mu guards changed, which workers append to with an SA's lock held.
	mu      sync.Mutex
	changed []*SA
	// take serialises TakeChanges; what follows is guarded by it.
	take  sync.Mutex
	polls uint64
	spare []*SA // the other change list, swapped in by each poll
	scan  []*SA
}

// touch marks sa's records stale, in the state file and in the cluster;
// sa.mu is held.
func (e *Engine) touch(sa *SA) {
	e.dirty.Store(true)
	e.markChanged(sa)
}

// midMoved is called when one of sa's Message IDs moved in an ordinary
// exchange; sa.mu is held. Only an SA without RFC 6311 needs recording
// for it.
func (e *Engine) midMoved(sa *SA) {
	if sa.ext.MIDSync {
		return
	}
	e.dirty.Store(true)
	if sa.dirty || sa.midsDirty || !e.repl.on.Load() {
		return
	}
	sa.midsDirty = true
	e.repl.mu.Lock()
	e.repl.changed = append(e.repl.changed, sa)
	e.repl.mu.Unlock()
}

// markChanged puts sa on the change list unless it is there; sa.mu is held.
func (e *Engine) markChanged(sa *SA) {
	if sa.dirty || !e.repl.on.Load() {
		return
	}
	sa.dirty = true
	if sa.midsDirty {
		return // listed already; the whole record will go
	}
	e.repl.mu.Lock()
	e.repl.changed = append(e.repl.changed, sa)
	e.repl.mu.Unlock()
}

// TakeChanges returns, and forgets, what changed since the last call: a
// record of every established SA that changed (established, rekeyed, its
// Child SAs created, rekeyed or deleted, synchronised, moved, a
// reservation renewed), the Message IDs of every SA without RFC 6311
// that only exchanged messages (MIDs), and the key of every established
// SA that ended. An SA handed over by Release is not reported as ended:
// it lives on elsewhere. A key in Put may also be in MIDs, with the
// record's values or older ones: the record wins.
//
// With counters, SAs whose ESP sequence numbers moved since their last
// record are recorded too: every such SA without RFC 6311, and an RFC
// 6311 SA when its last record is older than ten seconds. That reads the
// data plane for every Child SA, so it is meant for about one call a
// second.
//
// The first call returns a record of every established SA: change
// tracking starts with it.
func (e *Engine) TakeChanges(counters bool) Changes {
	r := &e.repl
	r.take.Lock()
	defer r.take.Unlock()
	first := !r.on.Swap(true)
	r.polls++
	now := e.now()

	r.mu.Lock()
	list := r.changed
	r.changed = r.spare[:0]
	r.mu.Unlock()

	var ch Changes
	for i, sa := range list {
		list[i] = nil
		sa.mu.Lock()
		// An SA listed twice (RecordsOn cleared it in between) is
		// reported once.
		switch {
		case sa.dirty:
			sa.dirty, sa.midsDirty = false, false
			e.collect(sa, now, &ch)
		case sa.midsDirty:
			sa.midsDirty = false
			e.collectMIDs(sa, now, &ch)
		}
		sa.mu.Unlock()
	}
	r.spare = list[:0]

	if first || counters {
		sas := r.scan
		e.table.Range(func(sa *SA) bool { sas = append(sas, sa); return true })
		for i, sa := range sas {
			sas[i] = nil
			sa.mu.Lock()
			if sa.taken != r.polls && sa.state == StateEstablished && sa.keys != nil &&
				(first || e.countersMoved(sa, now)) {
				sa.dirty, sa.midsDirty = false, false
				e.collect(sa, now, &ch)
			}
			sa.mu.Unlock()
		}
		r.scan = sas[:0]
	}
	return ch
}

// collect adds sa to ch as it is now; sa.mu is held.
func (e *Engine) collect(sa *SA, now time.Time, ch *Changes) {
	switch {
	case sa.released:
	case sa.state == StateEstablished && sa.keys != nil:
		sa.taken = e.repl.polls
		ch.Put = append(ch.Put, e.record(sa, now, true))
	case sa.state == StateDeleting || sa.state == StateDead:
		// A deleting SA will not be established again: the old SA of
		// a rekey waits only for the peer's Delete, and its Child SAs
		// already belong to the new SA, whose record must be the only
		// one to restore them.
		if !sa.established.IsZero() && !sa.gone {
			sa.gone = true
			ch.Deleted = append(ch.Deleted, SAKey{SPIi: sa.spiI, SPIr: sa.spiR})
		}
	}
}

// collectMIDs adds sa's Message IDs to ch, or what collect would for an
// SA that is no longer established; sa.mu is held.
func (e *Engine) collectMIDs(sa *SA, now time.Time, ch *Changes) {
	if sa.released || sa.state != StateEstablished || sa.keys == nil {
		e.collect(sa, now, ch)
		return
	}
	send := sa.nextSend
	if sa.out != nil {
		send = sa.out.mid // as record does for an SA without RFC 6311
	}
	ch.MIDs = append(ch.MIDs, MIDs{Key: SAKey{SPIi: sa.spiI, SPIr: sa.spiR}, NextSend: send, NextRecv: sa.nextRecv})
}

// countersMoved reports whether sa's ESP sequence numbers moved since its
// last replicated record in a way the cluster needs to see; sa.mu is
// held.
func (e *Engine) countersMoved(sa *SA, now time.Time) bool {
	if e.cfg.Dataplane == nil {
		return false
	}
	if sa.ext.MIDSync && now.Sub(sa.replAt) < counterRecordAge {
		return false
	}
	dp := e.cfg.Dataplane
	for _, c := range sa.children {
		if c.state == childDeleting || c.keys == nil || !c.installed {
			continue
		}
		// A successor jumps its outbound counters by the recorded rate;
		// the inbound rate only sizes an IPSEC_REPLAY_COUNTER_SYNC delta,
		// so without that it is not worth a data plane read (a netlink
		// round trip with the kernel's).
		if out, err := dp.OutboundSeq(dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)}); err == nil && out != c.replOut {
			return true
		}
		if !sa.ext.ReplaySync {
			continue
		}
		if r, err := dp.ReplayState(dataplane.SAID{SPI: c.spiIn, Src: addrOf(sa.remote), Dst: addrOf(sa.local)}); err == nil && r.Seq != c.replIn {
			return true
		}
	}
	return false
}

// RecordsOn returns a record of every established SA whose local address
// is local, as replicated records: the last word of a node handing the
// address to another (then Release). Those SAs count as recorded for
// TakeChanges.
func (e *Engine) RecordsOn(local netip.Addr) []Record {
	local = local.Unmap()
	var out []Record
	now := e.now()
	for _, sa := range e.sasOn(local) {
		sa.mu.Lock()
		if sa.state == StateEstablished && sa.keys != nil && addrOf(sa.local) == local {
			sa.dirty, sa.midsDirty = false, false
			out = append(out, e.record(sa, now, true))
		}
		sa.mu.Unlock()
	}
	return out
}

// Release forgets every IKE SA whose local address is local, without a
// word to the peer: the address moved to another node, which continues
// the SAs from their records. Their Child SAs leave the data plane, their
// virtual IPs return to the pool, their timers stop; TakeChanges does not
// report them as deleted. It returns how many IKE SAs it released.
func (e *Engine) Release(local netip.Addr) int {
	local = local.Unmap()
	n := 0
	for _, sa := range e.sasOn(local) {
		sa.mu.Lock()
		if sa.state != StateDead && addrOf(sa.local) == local {
			// Only an established SA lives on elsewhere; one being
			// deleted or set up ends here, as it would have anyway.
			sa.released = sa.state == StateEstablished
			e.remove(sa, "released to another node")
			n++
		}
		sa.mu.Unlock()
	}
	return n
}

// sasOn returns the SAs that had local as their local address when looked
// at; the caller checks again under each SA's lock.
func (e *Engine) sasOn(local netip.Addr) []*SA {
	var all []*SA
	e.table.Range(func(sa *SA) bool { all = append(all, sa); return true })
	out := all[:0]
	for _, sa := range all {
		sa.mu.Lock()
		if addrOf(sa.local) == local {
			out = append(out, sa)
		}
		sa.mu.Unlock()
	}
	return out
}
