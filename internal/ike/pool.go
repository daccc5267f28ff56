package ike

import (
	"errors"
	"net/netip"
	"sync"

	"github.com/hike-vpn/hike/internal/wire"
)

// Pool hands out virtual IPs from a range (RFC 7296 §2.19). A client that
// reconnects under the same identity gets its previous address back when it
// is still free, which keeps its sessions' addresses stable across
// reconnects, as remote-access users expect.
type Pool struct {
	Name       string
	first      netip.Addr
	last       netip.Addr
	mu         sync.Mutex
	next       netip.Addr
	leased     map[netip.Addr]string
	byIdentity map[string]netip.Addr
}

// ErrPoolExhausted is returned when every address is leased.
var ErrPoolExhausted = errors.New("virtual IP pool exhausted")

// NewPool returns a pool over the inclusive range first..last.
func NewPool(name string, first, last netip.Addr) *Pool {
	return &Pool{Name: name, first: first, last: last, next: first,
		leased: make(map[netip.Addr]string), byIdentity: make(map[string]netip.Addr)}
}

// Contains reports whether a is in the pool's range.
func (p *Pool) Contains(a netip.Addr) bool {
	return a.Compare(p.first) >= 0 && a.Compare(p.last) <= 0
}

// Acquire leases an address to id.
func (p *Pool) Acquire(id wire.ID) (netip.Addr, error) {
	key := idKey(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.byIdentity[key]; ok {
		if _, taken := p.leased[a]; !taken {
			p.leased[a] = key
			return a, nil
		}
	}
	start := p.next
	for a := start; ; {
		if _, taken := p.leased[a]; !taken {
			p.leased[a] = key
			p.byIdentity[key] = a
			p.next = p.step(a)
			return a, nil
		}
		if a = p.step(a); a == start {
			return netip.Addr{}, ErrPoolExhausted
		}
	}
}

// Claim marks a as leased to id, as when an SA is restored from its record.
func (p *Pool) Claim(a netip.Addr, id wire.ID) {
	key := idKey(id)
	p.mu.Lock()
	p.leased[a] = key
	p.byIdentity[key] = a
	p.mu.Unlock()
}

// Release returns a to the pool if id still holds it.
func (p *Pool) Release(a netip.Addr, id wire.ID) {
	p.mu.Lock()
	if p.leased[a] == idKey(id) {
		delete(p.leased, a)
	}
	p.mu.Unlock()
}

// Leased returns the number of addresses in use.
func (p *Pool) Leased() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.leased)
}

func (p *Pool) step(a netip.Addr) netip.Addr {
	if a == p.last {
		return p.first
	}
	return a.Next()
}

func idKey(id wire.ID) string {
	return string(rune(id.Type)) + string(id.Data)
}
