// Package controltest provides an in-memory control.Service for tests of
// the control API and of the commands built on it.
package controltest

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/ike"
)

// Connection names with a fixed behaviour in Initiate.
const (
	ConnFail  = "fail"  // the exchange fails with ErrAuthFailed
	ConnStall = "stall" // the outcome never arrives
)

// ErrAuthFailed is the outcome of initiating ConnFail.
var ErrAuthFailed = errors.New("peer answered AUTHENTICATION_FAILED")

// ErrNotNegotiated is what Resync returns for an SA without MIDSync.
var ErrNotNegotiated = errors.New("RFC 6311 message ID sync not negotiated with this peer")

// Fake is a control.Service over a map of SAs. Outcomes are delivered from
// another goroutine, as the engine does.
type Fake struct {
	mu    sync.Mutex
	sas   map[string]ike.SAInfo
	conns map[string]bool
	next  uint64
	// NoResync makes Resync report control.ErrNotAvailable.
	NoResync bool
}

// New returns a Fake that knows the given connection names (plus ConnFail
// and ConnStall) and holds sas.
func New(conns []string, sas ...ike.SAInfo) *Fake {
	f := &Fake{sas: map[string]ike.SAInfo{}, conns: map[string]bool{ConnFail: true, ConnStall: true}, next: 0x1000}
	for _, c := range conns {
		f.conns[c] = true
	}
	for _, sa := range sas {
		f.sas[sa.ID] = sa
	}
	return f
}

// SA builds an established SA record as the engine would report it.
func SA(spiI, spiR uint64, conn, remote string) ike.SAInfo {
	return ike.SAInfo{
		ID:    fmt.Sprintf("%x_i/%x_r", spiI, spiR),
		Conn:  conn,
		State: "established",
		SPIi:  fmt.Sprintf("%016x", spiI), SPIr: fmt.Sprintf("%016x", spiR),
		Local: "192.0.2.1:500", Remote: remote,
		Suite:       "encr=20/256 prf=7 dh=31",
		NextSendMID: 2, NextRecvMID: 2,
		Children: []ike.ChildInfo{},
	}
}

// List implements control.Service.
func (f *Fake) List() []ike.SAInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]ike.SAInfo, 0, len(f.sas))
	for _, sa := range f.sas {
		out = append(out, sa)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

func (f *Fake) find(ref string) (ike.SAInfo, bool) {
	for _, sa := range f.sas {
		if sa.ID == ref || sa.SPIi == ref || sa.SPIr == ref {
			return sa, true
		}
	}
	return ike.SAInfo{}, false
}

// Show implements control.Service.
func (f *Fake) Show(ref string) (ike.SAInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sa, ok := f.find(ref)
	if !ok {
		return ike.SAInfo{}, ike.ErrNoSuchSA
	}
	return sa, nil
}

// Initiate implements control.Service.
func (f *Fake) Initiate(conn string, done func(ike.SAInfo, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.conns[conn] {
		return fmt.Errorf("%w %q", control.ErrUnknownConn, conn)
	}
	switch conn {
	case ConnStall:
		return nil
	case ConnFail:
		go done(ike.SAInfo{}, ErrAuthFailed)
		return nil
	}
	f.next++
	sa := SA(f.next, f.next+0x100, conn, "198.51.100.7:500")
	sa.Initiator = true
	f.sas[sa.ID] = sa
	go done(sa, nil)
	return nil
}

// Terminate implements control.Service.
func (f *Fake) Terminate(ref string, done func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sa, ok := f.find(ref)
	if !ok {
		return ike.ErrNoSuchSA
	}
	delete(f.sas, sa.ID)
	go done(nil)
	return nil
}

// Resync implements control.Service: it moves the send Message ID past a
// window of 1 plus a margin of 8 and records before and after as the
// engine does.
func (f *Fake) Resync(ref string, done func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.NoResync {
		return control.ErrNotAvailable
	}
	sa, ok := f.find(ref)
	if !ok {
		return ike.ErrNoSuchSA
	}
	if !sa.Extensions.MIDSync {
		return ErrNotNegotiated
	}
	sa.Stats.LastSyncBefore = [2]uint32{sa.NextSendMID, sa.NextRecvMID}
	sa.NextSendMID += 1 + 8
	sa.Stats.LastSyncAfter = [2]uint32{sa.NextSendMID, sa.NextRecvMID}
	f.sas[sa.ID] = sa
	go done(nil)
	return nil
}
