package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// saEntry is what the FSM holds for one IKE SA: who serves it, the address
// it lives on, and the sealed record. The FSM never decrypts.
type saEntry struct {
	owner string
	local netip.Addr
	blob  []byte
	// Message IDs replicated after the record (an SA without RFC 6311
	// that exchanged messages since): they replace the record's.
	hasMIDs    bool
	send, recv uint32
}

// fsm is the replicated state: SA records and VIP ownership. Apply is
// deterministic and never fails on a well-formed command; a command it
// cannot parse is skipped on every node alike.
type fsm struct {
	mu  sync.RWMutex
	sas map[SAKey]*saEntry
	// owned counts the SAs per owner, kept as sas changes: `hike cluster
	// status` reads it without walking tens of thousands of entries.
	owned map[string]int
	vips  map[netip.Addr]string
	// notify is called with each ownership change, outside mu.
	notify func(Event)
	stats  fsmStats
	// last is the index of the last command entry applied. raft's own
	// AppliedIndex counts entries handed to the FSM goroutine, which may
	// not have applied them yet.
	last atomic.Uint64
}

// fsmStats counts what this copy of the state applied: log entries of SA
// and VIP commands (a snapshot restore counts nothing).
type fsmStats struct {
	entries, entryBytes, saPuts, saDeletes, saMIDs, vipMoves atomic.Uint64
	// saStale counts SA writes refused because the writer no longer
	// serves the SA.
	saStale atomic.Uint64
}

// writable says whether owner may apply op; mu is held. An SA that exists
// belongs to its owner; a new one on a VIP to the VIP's owner.
func (f *fsm) writable(owner string, op *saOp) bool {
	if e, ok := f.sas[op.key]; ok {
		return e.owner == owner
	}
	if op.mids {
		return false // Message IDs of an SA the state does not hold
	}
	if op.del {
		return true
	}
	vo, isVIP := f.vips[op.local.Unmap()]
	return !isVIP || vo == owner
}

func newFSM(notify func(Event)) *fsm {
	return &fsm{sas: map[SAKey]*saEntry{}, owned: map[string]int{}, vips: map[netip.Addr]string{}, notify: notify}
}

// errOwnerChanged is the answer to a VIP compare-and-set that lost a race:
// the VIP no longer has the owner the decision was based on.
var errOwnerChanged = errors.New("cluster: VIP owner changed meanwhile")

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	defer f.last.Store(l.Index)
	c, err := decodeCommand(l.Data)
	if err != nil {
		return err
	}
	f.stats.entries.Add(1)
	f.stats.entryBytes.Add(uint64(len(l.Data)))
	switch c.kind {
	case cmdSAs:
		var dels, puts, mids uint64
		f.mu.Lock()
		for i := range c.ops {
			op := &c.ops[i]
			// Only the node that serves an SA writes it. A write that
			// was on its way when the SA's VIP moved (a takeover, a
			// handback) would otherwise take the SA back from the VIP's
			// new owner, or delete what the new owner restored.
			if !f.writable(c.owner, op) {
				f.stats.saStale.Add(1)
				continue
			}
			if op.mids {
				if e := f.sas[op.key]; e != nil {
					e.hasMIDs, e.send, e.recv = true, op.send, op.recv
					mids++
				}
				continue
			}
			if op.del {
				if e, ok := f.sas[op.key]; ok {
					f.owned[e.owner]--
					delete(f.sas, op.key)
				}
				dels++
				continue
			}
			puts++
			if _, ok := f.sas[op.key]; !ok {
				f.owned[c.owner]++ // an existing SA keeps its owner (writable)
			}
			// A copy: the entry's buffer would otherwise stay alive as long as
			// any one of its records, and raft makes no promise about reuse.
			f.sas[op.key] = &saEntry{owner: c.owner, local: op.local, blob: bytes.Clone(op.blob)}
		}
		f.mu.Unlock()
		f.stats.saDeletes.Add(dels)
		f.stats.saPuts.Add(puts)
		f.stats.saMIDs.Add(mids)
		return nil
	case cmdVIP:
		f.mu.Lock()
		if f.vips[c.vip] != c.from {
			f.mu.Unlock()
			return errOwnerChanged
		}
		f.setVIP(c.vip, c.from, c.to)
		f.mu.Unlock()
		if c.from == c.to {
			return nil
		}
		f.stats.vipMoves.Add(1)
		if f.notify != nil {
			f.notify(Event{Kind: EventVIP, VIP: c.vip, From: c.from, To: c.to})
		}
	}
	return nil
}

// setVIP moves the VIP and the SAs that arrived on it; mu is held. SAs of
// the old owner on other addresses stay where they are.
func (f *fsm) setVIP(vip netip.Addr, from, to string) {
	if to == "" {
		delete(f.vips, vip)
	} else {
		f.vips[vip] = to
	}
	if from == "" || to == "" {
		return
	}
	for _, e := range f.sas {
		if e.owner == from && e.local == vip {
			e.owner = to
			f.owned[from]--
			f.owned[to]++
		}
	}
}

// A snapshot writes the sealed records as they are.
//
// Layout: magic | uvarint #vips | (addr, owner)* | uvarint #sas |
// (spi_i, spi_r, owner, addr, uvarint len, blob, mids)*, where mids is
// 0, or 1 and the two Message IDs (v2; v1 snapshots have no mids).
const (
	snapMagic   = "hike-cluster-fsm-v2\n"
	snapMagicV1 = "hike-cluster-fsm-v1\n"
)

type fsmSnapshot struct {
	vips map[netip.Addr]string
	sas  map[SAKey]saEntry
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &fsmSnapshot{vips: make(map[netip.Addr]string, len(f.vips)), sas: make(map[SAKey]saEntry, len(f.sas))}
	for k, v := range f.vips {
		s.vips[k] = v
	}
	// Entries are copied because a VIP move changes owner in place; blobs
	// are never modified, so they are shared.
	for k, e := range f.sas {
		s.sas[k] = *e
	}
	return s, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 64<<10)
	b := make([]byte, 0, 4096)
	b = append(b, snapMagic...)
	b = binary.AppendUvarint(b, uint64(len(s.vips)))
	for a, o := range s.vips {
		b = appendString(appendAddr(b, a), o)
	}
	b = binary.AppendUvarint(b, uint64(len(s.sas)))
	for k, e := range s.sas {
		b = binary.BigEndian.AppendUint64(b, k.SPIi)
		b = binary.BigEndian.AppendUint64(b, k.SPIr)
		b = appendString(b, e.owner)
		b = appendAddr(b, e.local)
		b = binary.AppendUvarint(b, uint64(len(e.blob)))
		b = append(b, e.blob...)
		if e.hasMIDs {
			b = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(append(b, 1), e.send), e.recv)
		} else {
			b = append(b, 0)
		}
		if len(b) > 32<<10 {
			if _, err := w.Write(b); err != nil {
				sink.Cancel()
				return err
			}
			b = b[:0]
		}
	}
	if _, err := w.Write(b); err != nil {
		sink.Cancel()
		return err
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// snapReader reads the snapshot layout from a stream.
type snapReader struct {
	r   *bufio.Reader
	err error
}

func (s *snapReader) full(n int) []byte {
	if s.err != nil {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.r, b); err != nil {
		s.err = err
		return nil
	}
	return b
}

func (s *snapReader) byte() byte {
	if s.err != nil {
		return 0
	}
	v, err := s.r.ReadByte()
	s.err = err
	return v
}

func (s *snapReader) u32() uint32 {
	b := s.full(4)
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (s *snapReader) uvarint() uint64 {
	if s.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(s.r)
	s.err = err
	return v
}

func (s *snapReader) addr() netip.Addr {
	n := s.byte()
	if n == 0 {
		return netip.Addr{}
	}
	if n != 4 && n != 16 {
		s.err = errors.New("bad address")
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(s.full(int(n)))
	return a.Unmap()
}

func (s *snapReader) string() string { return string(s.full(int(s.byte()))) }

// maxBlob bounds one sealed record read from a snapshot, so a corrupt
// length cannot allocate without limit.
const maxBlob = 1 << 20

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s := &snapReader{r: bufio.NewReaderSize(rc, 64<<10)}
	magic := string(s.full(len(snapMagic)))
	v2 := magic == snapMagic
	if !v2 && magic != snapMagicV1 {
		if s.err != nil {
			return fmt.Errorf("cluster: snapshot: %w", s.err)
		}
		return errors.New("cluster: snapshot: not a hike cluster snapshot")
	}
	vips := map[netip.Addr]string{}
	for n := s.uvarint(); n > 0 && s.err == nil; n-- {
		a := s.addr()
		vips[a] = s.string()
	}
	sas := map[SAKey]*saEntry{}
	for n := s.uvarint(); n > 0 && s.err == nil; n-- {
		k := SAKey{binary.BigEndian.Uint64(pad8(s.full(8))), binary.BigEndian.Uint64(pad8(s.full(8)))}
		e := &saEntry{owner: s.string(), local: s.addr()}
		l := s.uvarint()
		if l > maxBlob {
			return errors.New("cluster: snapshot: record too large")
		}
		e.blob = s.full(int(l))
		if v2 && s.byte() == 1 {
			e.hasMIDs = true
			e.send, e.recv = s.u32(), s.u32()
		}
		sas[k] = e
	}
	if s.err != nil {
		return fmt.Errorf("cluster: snapshot: %w", s.err)
	}
	owned := map[string]int{}
	for _, e := range sas {
		owned[e.owner]++
	}
	f.mu.Lock()
	old := f.vips
	f.vips, f.sas, f.owned = vips, sas, owned
	f.mu.Unlock()
	// Report each VIP whose owner the snapshot changed, as if the commands
	// had been applied one by one.
	if f.notify != nil {
		for a, o := range vips {
			if old[a] != o {
				f.notify(Event{Kind: EventVIP, VIP: a, From: old[a], To: o})
			}
		}
		for a, o := range old {
			if _, ok := vips[a]; !ok {
				f.notify(Event{Kind: EventVIP, VIP: a, From: o})
			}
		}
	}
	return nil
}

func pad8(b []byte) []byte {
	if len(b) != 8 {
		return make([]byte, 8)
	}
	return b
}
