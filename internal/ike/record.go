package ike

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/msgsync"
	"github.com/hike-vpn/hike/internal/wire"
)

// Record is the serializable state of one established IKE SA and its Child
// SAs: what a restarting daemon restores from and what the cluster
// replicates. It holds key material, so it is written only encrypted
// (package state) and replicated only over mutually authenticated TLS; it
// never goes to a log (String and LogValue redact it).
//
// The AEAD IV counter is recorded as a reservation, not a value
// (DESIGN.md): IVMark is above anything this node has used or will use
// before it records again, so a successor never reuses an IV. NextSend is a
// reservation too when the peer does RFC 6311, whose sync repairs the
// Message IDs in both directions; a peer without it accepts nothing but
// the exact next Message ID (its window is 1 in practice), so for such an
// SA NextSend is exact and every Message ID change makes the record stale.
type Record struct {
	Version     int               `json:"v"`
	Conn        string            `json:"conn"`
	SPIi        uint64            `json:"spi_i"`
	SPIr        uint64            `json:"spi_r"`
	Initiator   bool              `json:"initiator"`
	Local       netip.AddrPort    `json:"local"`
	Remote      netip.AddrPort    `json:"remote"`
	Encr        uint16            `json:"encr"`
	EncrBits    uint16            `json:"encr_bits"`
	PRF         uint16            `json:"prf"`
	Integ       uint16            `json:"integ"`
	DH          uint16            `json:"dh"`
	Keys        RecordKeys        `json:"keys"`
	Ext         Extensions        `json:"ext"`
	PeerIDType  wire.IDType       `json:"peer_id_type"`
	PeerID      []byte            `json:"peer_id"`
	VIP         netip.Addr        `json:"vip,omitzero"`
	NextSend    uint32            `json:"next_send"`
	NextRecv    uint32            `json:"next_recv"`
	PeerWindow  uint32            `json:"peer_window"`
	IVMark      uint64            `json:"iv_mark"`
	Sync        msgsync.PeerState `json:"sync"`
	Established time.Time         `json:"established"`
	Children    []ChildRecord     `json:"children"`
	Saved       time.Time         `json:"saved"`
}

// RecordKeys are the IKE SA's keys.
type RecordKeys struct {
	D, Ai, Ar, Ei, Er, Pi, Pr []byte
}

// ChildRecord is one Child SA with the keys of both directions.
type ChildRecord struct {
	Name     string                 `json:"name"`
	ReqID    uint32                 `json:"reqid"`
	SPIIn    uint32                 `json:"spi_in"`
	SPIOut   uint32                 `json:"spi_out"`
	Encr     uint16                 `json:"encr"`
	EncrBits uint16                 `json:"encr_bits"`
	Integ    uint16                 `json:"integ"`
	ESN      bool                   `json:"esn"`
	LocalTS  []wire.TrafficSelector `json:"local_ts"`
	RemoteTS []wire.TrafficSelector `json:"remote_ts"`
	InEncr   []byte                 `json:"in_encr"`
	InInteg  []byte                 `json:"in_integ"`
	OutEncr  []byte                 `json:"out_encr"`
	OutInteg []byte                 `json:"out_integ"`
	// OutSeq and InSeq are the last outbound and highest inbound sequence
	// numbers when recording: with Created and the record's time they give
	// the traffic rate from which a successor estimates how far the
	// counters moved since (RFC 6311 §5.2).
	OutSeq  uint64    `json:"out_seq"`
	InSeq   uint64    `json:"in_seq"`
	Created time.Time `json:"created"`
}

const recordVersion = 1

// Reservation sizes: a Message ID mark is renewed every sendBlock requests,
// an IV mark every ivBlock messages, so recording costs one write per block
// rather than one per exchange.
const (
	sendBlock = 64
	ivBlock   = 1 << 16
	// ivRestoreBlocks spreads restored IV counters over 2^40 of the 2^64
	// values.
	ivRestoreBlocks = 1 << 24
)

func (Record) String() string { return "[ike record redacted]" }

// Records returns a record of every established IKE SA.
func (e *Engine) Records() []Record {
	var sas []*SA
	e.table.Range(func(sa *SA) bool { sas = append(sas, sa); return true })
	out := make([]Record, 0, len(sas))
	now := e.now()
	for _, sa := range sas {
		sa.mu.Lock()
		if sa.state == StateEstablished && sa.keys != nil {
			out = append(out, e.record(sa, now, false))
		}
		sa.mu.Unlock()
	}
	return out
}

// record builds sa's record and renews its reservations, those of the
// cluster's copy with repl, else those of the state file; sa.mu is held.
func (e *Engine) record(sa *SA, now time.Time, repl bool) Record {
	var send uint32
	switch {
	case !sa.ext.MIDSync && sa.out != nil:
		// A successor sends its first request under this Message ID; a
		// peer that answered it already resends that answer (RFC 7296
		// §2.1), and sendSlack takes it.
		send = sa.out.mid
	case !sa.ext.MIDSync:
		send = sa.nextSend
	case sa.out != nil:
		send = sa.out.mid + 1 + sendBlock
	default:
		send = sa.nextSend + sendBlock
	}
	iv := sa.sk.NextIV() + ivBlock
	if repl {
		sa.replSend, sa.replIV, sa.replAt = send, iv, now
	} else {
		sa.sendMark, sa.ivMark = send, iv
	}
	k := sa.keys
	r := Record{
		Version: recordVersion, SPIi: sa.spiI, SPIr: sa.spiR, Initiator: sa.initiator,
		Local: sa.local, Remote: sa.remote,
		Encr: sa.suite.Encr.ID, EncrBits: sa.suite.Encr.KeyBits, PRF: sa.suite.PRF.ID, DH: sa.suite.DH,
		Keys: RecordKeys{D: bytes.Clone(k.D), Ai: bytes.Clone(k.Ai), Ar: bytes.Clone(k.Ar), Ei: bytes.Clone(k.Ei),
			Er: bytes.Clone(k.Er), Pi: bytes.Clone(k.Pi), Pr: bytes.Clone(k.Pr)},
		Ext: sa.ext, PeerIDType: sa.peerID.Type, PeerID: bytes.Clone(sa.peerID.Data), VIP: sa.vip,
		NextSend: send, NextRecv: sa.nextRecv, PeerWindow: sa.peerWindow, IVMark: iv,
		Sync: sa.sync, Established: sa.established, Saved: now,
	}
	if sa.conn != nil {
		r.Conn = sa.conn.Name
	}
	if sa.suite.Integ != nil {
		r.Integ = sa.suite.Integ.ID
	}
	for _, c := range sa.children {
		if c.state == childDeleting || c.keys == nil {
			continue
		}
		cr := ChildRecord{Name: c.cfgName(), ReqID: c.reqID, SPIIn: c.spiIn, SPIOut: c.spiOut, Encr: c.encr,
			EncrBits: c.encrBits, Integ: c.integ, ESN: c.esn, LocalTS: c.localTS, RemoteTS: c.remoteTS,
			InEncr: bytes.Clone(c.keys.inE), InInteg: bytes.Clone(c.keys.inA),
			OutEncr: bytes.Clone(c.keys.outE), OutInteg: bytes.Clone(c.keys.outA), Created: c.created}
		cr.OutSeq, cr.InSeq = e.childSeqs(sa, c)
		if repl {
			c.replOut, c.replIn = cr.OutSeq, cr.InSeq
		}
		r.Children = append(r.Children, cr)
	}
	return r
}

// childSeqs reads c's outbound and highest inbound sequence numbers from
// the data plane, zero where it has none.
func (e *Engine) childSeqs(sa *SA, c *ChildSA) (out, in uint64) {
	dp := e.cfg.Dataplane
	if dp == nil || !c.installed {
		return 0, 0
	}
	out, _ = dp.OutboundSeq(dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)})
	if r, err := dp.ReplayState(dataplane.SAID{SPI: c.spiIn, Src: addrOf(sa.remote), Dst: addrOf(sa.local)}); err == nil {
		in = r.Seq
	}
	return out, in
}

// RestoreOptions say how restored SAs resume.
type RestoreOptions struct {
	// Stale says the records may be older than the last exchange (a crash,
	// a takeover): every RFC 6311 capable SA runs the cluster role before it
	// sends anything else, and every other SA's outbound ESP counters jump
	// past anything possibly used.
	Stale bool
	// Sync tunes those procedures.
	Sync ResyncOptions
	// FreshReqIDs gives the restored Child SAs new local ReqIDs: records
	// from another cluster member carry that member's, which may name
	// Child SAs of this one. A restart keeps them, so that kernel SAs
	// that outlived the daemon are adopted as they are.
	FreshReqIDs bool
	// Synced, if set, is told once per restored SA when it may send
	// again: at the end of its RFC 6311 sync (err says whether the sync
	// failed, after which the SA is deleted), or at once for an SA that
	// needs none. It runs with the SA locked: it must be quick and must
	// not call into the engine.
	Synced func(k SAKey, err error)
}

// Restore brings SAs back from records, as after a restart or a takeover:
// into the table under their SPIs, their Child SAs into the data plane
// (with outbound counters moved past anything possibly used), timers
// armed. It returns how many SAs were restored; records that cannot be
// restored are reported in the error and skipped.
func (e *Engine) Restore(recs []Record, opts RestoreOptions) (int, error) {
	var errs []error
	n := 0
	for i := range recs {
		sa, err := e.restoreOne(&recs[i], opts.FreshReqIDs)
		if err != nil {
			errs = append(errs, fmt.Errorf("SA %x/%x: %w", recs[i].SPIi, recs[i].SPIr, err))
			continue
		}
		n++
		key := SAKey{SPIi: sa.spiI, SPIr: sa.spiR}
		synced := func(err error) {
			if opts.Synced != nil {
				opts.Synced(key, err)
			}
		}
		sa.mu.Lock()
		switch {
		case !opts.Stale:
			synced(nil)
		case sa.ext.MIDSync:
			sa.needsSync = true
			if err := e.startResync(sa, opts.Sync, synced); err != nil {
				e.log.Warn("cannot resync restored SA", "sa", sa.logID(), "err", err)
				synced(err)
			}
		default:
			synced(nil)
			sa.needsSync = true
			sa.recvSlack, sa.sendSlack = true, true
			o := opts.Sync
			if o.OutboundJump == 0 {
				o.OutboundJump = sa.conn.SyncJump
			}
			e.jumpOutbound(sa, o)
		}
		// Replicate at once: this node's IVs and Message IDs start at or
		// above the record's marks, and a successor must find marks
		// above what this node used.
		e.touch(sa)
		e.rearm(sa)
		sa.mu.Unlock()
	}
	return n, errors.Join(errs...)
}

func (e *Engine) restoreOne(r *Record, freshReqIDs bool) (*SA, error) {
	if r.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", r.Version, recordVersion)
	}
	conn := e.conns[r.Conn]
	if conn == nil {
		return nil, fmt.Errorf("connection %q no longer configured", r.Conn)
	}
	encr, err := crypto.LookupEncr(r.Encr, r.EncrBits)
	if err != nil {
		return nil, err
	}
	prf, err := crypto.LookupPRF(r.PRF)
	if err != nil {
		return nil, err
	}
	var integ *crypto.Integ
	if r.Integ != 0 {
		if integ, err = crypto.LookupInteg(r.Integ); err != nil {
			return nil, err
		}
	}
	keys := &crypto.IKEKeys{D: bytes.Clone(r.Keys.D), Ai: bytes.Clone(r.Keys.Ai), Ar: bytes.Clone(r.Keys.Ar),
		Ei: bytes.Clone(r.Keys.Ei), Er: bytes.Clone(r.Keys.Er), Pi: bytes.Clone(r.Keys.Pi), Pr: bytes.Clone(r.Keys.Pr)}
	sk, err := crypto.NewSK(encr, integ, keys, r.Initiator)
	if err != nil {
		return nil, err
	}
	// RFC 6311 §3.4: a counter-based IV must never repeat, even after a
	// failover; the mark is above anything the previous owner used. This
	// node's own first messages go out before its next record is
	// replicated, and a node failing over again in that time leaves the
	// same mark to the next: each restore starts a random number of
	// blocks above it, so that two of them meet with a chance of 2^-24.
	sk.AdvanceIV(r.IVMark + ivBlock*rand.Uint64N(ivRestoreBlocks))
	now := e.now()
	sa := &SA{
		spiI: r.SPIi, spiR: r.SPIr, initiator: r.Initiator, state: StateEstablished, conn: conn,
		local: r.Local, remote: r.Remote, created: now, established: r.Established,
		suite: Suite{Encr: encr, PRF: prf, Integ: integ, DH: r.DH}, keys: keys, sk: sk, ext: r.Ext,
		peerID: wire.ID{Type: r.PeerIDType, Data: bytes.Clone(r.PeerID)}, vip: r.VIP,
		nextSend: r.NextSend, nextRecv: r.NextRecv, peerWindow: r.PeerWindow, sync: r.Sync,
		lastHeard: now, sendMark: r.NextSend, ivMark: r.IVMark,
		replSend: r.NextSend, replIV: r.IVMark, replAt: r.Saved,
	}
	if d := conn.DPDDelay; d > 0 {
		sa.dpdAt = now.Add(d)
	}
	if d := conn.RekeyTime; d > 0 {
		sa.rekeyAt = now.Add(jitter(d))
	}
	if !e.table.Restore(sa) {
		return nil, errors.New("SPI already in use")
	}
	if sa.vip.IsValid() && conn.Pool != nil && conn.Pool.Contains(sa.vip) {
		conn.Pool.Claim(sa.vip, sa.peerID)
	}
	for i := range r.Children {
		cr := &r.Children[i]
		var cfg *ChildConfig
		for _, cc := range conn.Children {
			if cc.Name == cr.Name {
				cfg = cc
			}
		}
		if cfg == nil && len(conn.Children) > 0 {
			cfg = conn.Children[0]
		}
		c := &ChildSA{cfg: cfg, reqID: cr.ReqID, spiIn: cr.SPIIn, spiOut: cr.SPIOut, encr: cr.Encr,
			encrBits: cr.EncrBits, integ: cr.Integ, esn: cr.ESN, localTS: cr.LocalTS, remoteTS: cr.RemoteTS,
			keys: &childKeys{inE: bytes.Clone(cr.InEncr), inA: bytes.Clone(cr.InInteg),
				outE: bytes.Clone(cr.OutEncr), outA: bytes.Clone(cr.OutInteg)}}
		c.replOut, c.replIn = cr.OutSeq, cr.InSeq
		claimChildSPI(c.spiIn)
		if age := r.Saved.Sub(cr.Created).Seconds(); age > 0 && !cr.Created.IsZero() {
			c.outRate, c.inRate = float64(cr.OutSeq)/age, float64(cr.InSeq)/age
			c.ratedAt = r.Saved
		}
		if cfg == nil {
			continue
		}
		switch {
		case freshReqIDs:
			c.reqID = e.reqIDs.Add(1)
		case e.reqIDs.Load() < c.reqID:
			e.reqIDs.Store(c.reqID)
		}
		if err := e.installChild(sa, c); err != nil {
			e.log.Warn("cannot reinstall Child SA", "sa", sa.logID(), "spi_in", hex32(c.spiIn), "err", err)
			continue
		}
		if dp := e.cfg.Dataplane; dp != nil && cr.OutSeq > 0 {
			// Never backwards: a kernel SA that outlived a killed daemon
			// is adopted with the counter it really reached, which is
			// past the record's.
			id := dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)}
			if cur, err := dp.OutboundSeq(id); err != nil || cur < cr.OutSeq {
				dp.SetOutboundSeq(id, cr.OutSeq)
			}
		}
		sa.children = append(sa.children, c)
	}
	e.stats.Established.Add(1)
	conn.active.Add(1)
	e.table.addPeer(sa)
	e.log.Info("IKE SA restored", "sa", sa.logID(), "conn", conn.Name, "remote", sa.remote,
		"children", len(sa.children), "next_send", sa.nextSend, "next_recv", sa.nextRecv, "record_age", now.Sub(r.Saved))
	return sa, nil
}

// Dirty reports, and clears, whether any SA changed in a way the state
// file's records must capture since the last call: established, rekeyed,
// deleted, a Message ID moved on an SA without RFC 6311, or a reservation
// running out.
func (e *Engine) Dirty() bool { return e.dirty.Swap(false) }

// checkMarks renews reservations that are about to run out, in the state
// file's records and in the cluster's; sa.mu is held. Our own Message IDs
// and IVs advance only here, after a message went out, so one check per
// sent message keeps both copies ahead.
func (e *Engine) checkMarks(sa *SA) {
	if sa.state != StateEstablished || sa.sk == nil {
		return
	}
	iv := sa.sk.NextIV() + ivBlock/2
	mid := sa.nextSend + sendBlock/2
	if (sa.ext.MIDSync && mid >= sa.sendMark) || iv >= sa.ivMark {
		e.dirty.Store(true)
	}
	if e.repl.on.Load() && ((sa.ext.MIDSync && mid >= sa.replSend) || iv >= sa.replIV) {
		e.markChanged(sa)
	}
}
