package ike

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
)

// shardBits is how many low bits of a local SPI name the shard that owns the
// SA. Routing a datagram to its SA is then arithmetic on the header followed
// by one map lookup under that shard's read lock: no global lock, and a NAT
// rebinding (new source address) never moves an SA.
const (
	shardBits = 6
	numShards = 1 << shardBits
)

// Table maps local IKE SPIs to IKE SAs. It also finds half-open SAs by the
// peer's SPI and address, which is all a retransmitted IKE_SA_INIT request
// carries (its SPIr is still zero).
type Table struct {
	shards [numShards]shard
	peers  peerIndex
}

type shard struct {
	mu       sync.RWMutex
	bySPI    map[uint64]*SA
	halfOpen map[halfOpenKey]*SA
}

type halfOpenKey struct {
	spi  uint64
	addr netip.AddrPort
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{}
	for i := range t.shards {
		t.shards[i].bySPI = make(map[uint64]*SA)
		t.shards[i].halfOpen = make(map[halfOpenKey]*SA)
	}
	return t
}

func (t *Table) shardOf(spi uint64) *shard { return &t.shards[spi&(numShards-1)] }

// Lookup returns the SA whose local SPI is spi.
func (t *Table) Lookup(spi uint64) *SA {
	s := t.shardOf(spi)
	s.mu.RLock()
	sa := s.bySPI[spi]
	s.mu.RUnlock()
	return sa
}

// LookupHalfOpen returns the SA created for an IKE_SA_INIT request with the
// peer's SPI from addr.
func (t *Table) LookupHalfOpen(peerSPI uint64, addr netip.AddrPort) *SA {
	s := t.shardOf(peerSPI)
	s.mu.RLock()
	sa := s.halfOpen[halfOpenKey{peerSPI, addr}]
	s.mu.RUnlock()
	return sa
}

// Insert allocates a random local SPI for sa, records it in sa and adds sa.
// The SPI is never zero and never one in use (RFC 7296 §2.6).
func (t *Table) Insert(sa *SA) uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		spi := binary.BigEndian.Uint64(b[:])
		if spi == 0 {
			continue
		}
		s := t.shardOf(spi)
		s.mu.Lock()
		if _, taken := s.bySPI[spi]; taken {
			s.mu.Unlock()
			continue
		}
		sa.setLocalSPI(spi)
		s.bySPI[spi] = sa
		s.mu.Unlock()
		return spi
	}
}

// Restore adds sa under the local SPI it already has, as after a restart or
// a takeover. It reports false if the SPI is taken.
func (t *Table) Restore(sa *SA) bool {
	spi := sa.LocalSPI()
	s := t.shardOf(spi)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.bySPI[spi]; taken || spi == 0 {
		return false
	}
	s.bySPI[spi] = sa
	return true
}

// AddHalfOpen indexes sa by the peer's SPI and address until it is
// established or removed.
func (t *Table) AddHalfOpen(peerSPI uint64, addr netip.AddrPort, sa *SA) {
	s := t.shardOf(peerSPI)
	s.mu.Lock()
	s.halfOpen[halfOpenKey{peerSPI, addr}] = sa
	s.mu.Unlock()
}

// RemoveHalfOpen drops the half-open index entry, if it still names sa.
func (t *Table) RemoveHalfOpen(peerSPI uint64, addr netip.AddrPort, sa *SA) {
	s := t.shardOf(peerSPI)
	k := halfOpenKey{peerSPI, addr}
	s.mu.Lock()
	if s.halfOpen[k] == sa {
		delete(s.halfOpen, k)
	}
	s.mu.Unlock()
}

// Remove drops sa from the table.
func (t *Table) Remove(sa *SA) {
	spi := sa.LocalSPI()
	s := t.shardOf(spi)
	s.mu.Lock()
	if s.bySPI[spi] == sa {
		delete(s.bySPI, spi)
	}
	s.mu.Unlock()
}

// Len returns the number of SAs (half-open ones included).
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.bySPI)
		s.mu.RUnlock()
	}
	return n
}

// Range calls f for every SA until f returns false. It holds one shard's
// read lock at a time, so f must not insert or remove.
func (t *Table) Range(f func(*SA) bool) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, sa := range s.bySPI {
			if !f(sa) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
	}
}

// peers indexes established SAs by connection and peer identity, for
// INITIAL_CONTACT (RFC 7296 §2.4) and for finding a peer's SA by name.
type peerIndex struct {
	mu sync.Mutex
	m  map[string][]*SA
}

func peerKey(sa *SA) string {
	name := ""
	if sa.conn != nil {
		name = sa.conn.Name
	}
	return name + "\x00" + idKey(sa.peerID)
}

func (t *Table) addPeer(sa *SA) {
	k := peerKey(sa)
	t.peers.mu.Lock()
	if t.peers.m == nil {
		t.peers.m = make(map[string][]*SA)
	}
	t.peers.m[k] = append(t.peers.m[k], sa)
	t.peers.mu.Unlock()
}

func (t *Table) removePeer(sa *SA) {
	k := peerKey(sa)
	t.peers.mu.Lock()
	l := t.peers.m[k]
	for i, o := range l {
		if o == sa {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(t.peers.m, k)
	} else {
		t.peers.m[k] = l
	}
	t.peers.mu.Unlock()
}

// peerSAs returns the established SAs with sa's connection and peer identity.
func (t *Table) peerSAs(sa *SA) []*SA {
	t.peers.mu.Lock()
	defer t.peers.mu.Unlock()
	return append([]*SA(nil), t.peers.m[peerKey(sa)]...)
}
