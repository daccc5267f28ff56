// Package xfrm is the kernel data plane: it installs ESP SAs and tunnel-mode
// policies in Linux XFRM over NETLINK_XFRM and reads and writes their
// sequence counters with XFRM_MSG_GETAE/NEWAE for RFC 6311 failover.
//
// The kernel moves the packets; this package only programs it. Two things
// stay with the socket owner (internal/transport): ESP-in-UDP (RFC 3948)
// arrives only on a UDP socket that has UDP_ENCAP_ESPINUDP set, and the
// IKE sockets need a per-socket bypass policy so that selectors covering
// the gateways' own addresses do not swallow IKE traffic.
//
// Every message is built here rather than through a netlink library: the
// library this project evaluated (vishvananda/netlink v1.3.1) can neither
// read nor write the replay state of a live SA, cannot express port ranges
// as masks, caps non-ESN replay windows at 32 and panics when an SA is
// formatted on kernels before 6.13. The messages are few and their bytes
// are tested in msg_test.go.
package xfrm

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"syscall"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// Options configure a Backend.
type Options struct {
	// NetNS is the path of the network namespace to manage (for example
	// /run/netns/blue); empty means the caller's.
	NetNS string
	// EventBuffer is the capacity of the Events channel (default 256).
	// When it is full the reader waits, and the kernel drops what its
	// socket cannot hold; that loss is reported as dp.EventLost.
	EventBuffer int
}

// Backend is the XFRM data plane. It implements dp.Backend.
type Backend struct {
	c      *conn
	mon    *monitor
	events chan dp.Event
	done   chan struct{} // closed by Close; unblocks a reader waiting on a full channel
	wg     sync.WaitGroup
	once   sync.Once
}

var _ dp.Backend = (*Backend)(nil)

// Open connects to the kernel's XFRM and starts listening for expire
// events. It does not probe for ESP; use Probe (or dp.Select) first.
func Open(opts Options) (*Backend, error) {
	c, err := dial(opts.NetNS)
	if err != nil {
		return nil, err
	}
	const groupExpire = 1 << (2 - 1) // XFRMNLGRP_EXPIRE = 2
	mon, err := listen(opts.NetNS, groupExpire)
	if err != nil {
		c.close()
		return nil, err
	}
	n := opts.EventBuffer
	if n <= 0 {
		n = 256
	}
	b := &Backend{c: c, mon: mon, events: make(chan dp.Event, n), done: make(chan struct{})}
	b.wg.Add(1)
	go b.readEvents()
	return b, nil
}

// Kind reports dp.KindXFRM.
func (b *Backend) Kind() dp.Kind { return dp.KindXFRM }

// Events delivers the kernel's soft and hard expire notifications.
func (b *Backend) Events() <-chan dp.Event { return b.events }

// Close stops the event reader and closes the netlink sockets. SAs and
// policies stay in the kernel.
func (b *Backend) Close() error {
	var err error
	b.once.Do(func() {
		close(b.done)
		err = b.mon.f.Close()
		b.wg.Wait()
		close(b.events)
		if cerr := b.c.close(); err == nil {
			err = cerr
		}
	})
	return err
}

func (b *Backend) readEvents() {
	defer b.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, err := b.mon.read(buf)
		if errors.Is(err, syscall.ENOBUFS) {
			if !b.emit(dp.Event{Kind: dp.EventLost}) {
				return
			}
			continue
		}
		if err != nil {
			return // closed
		}
		open := true
		_ = parseNlmsgs(buf[:n], func(typ, _ uint16, _ uint32, body []byte) bool {
			if typ != msgExpire {
				return true
			}
			ex, err := parseExpire(body)
			if err != nil {
				return true
			}
			ev := dp.Event{Kind: dp.EventSoftExpire, SA: dp.SAID{SPI: ex.spi, Src: ex.src, Dst: ex.dst}, ReqID: ex.reqid}
			if ex.hard {
				ev.Kind = dp.EventHardExpire
			}
			open = b.emit(ev)
			return open
		})
		if !open {
			return
		}
	}
}

// emit delivers an event, waiting while the channel is full (the kernel's
// socket buffer absorbs bursts meanwhile); it gives up when Close is called.
func (b *Backend) emit(ev dp.Event) bool {
	select {
	case b.events <- ev:
		return true
	case <-b.done:
		return false
	}
}

func saMsg(sa *dp.SA, update bool) ([]byte, error) {
	if err := sa.Validate(); err != nil {
		return nil, err
	}
	p := saParams{
		src: sa.ID.Src, dst: sa.ID.Dst, spi: sa.ID.SPI, reqid: sa.ReqID,
		alg: sa.Alg, encrKey: sa.EncrKey, integKey: sa.IntegKey,
		esn: sa.ESN, window: sa.ReplayWindow,
		softB: sa.Lifetime.SoftBytes, hardB: sa.Lifetime.HardBytes,
		softP: sa.Lifetime.SoftPackets, hardP: sa.Lifetime.HardPackets,
		update: update,
	}
	if sa.Encap != nil {
		p.encap, p.sport, p.dport = true, sa.Encap.SrcPort, sa.Encap.DstPort
	}
	return newSAMsg(&p)
}

// AddSAs installs the inbound SA, then the outbound one, and removes the
// inbound SA again if the outbound one fails.
//
// An SA the kernel already holds under the same ID and keys is kept, with
// its lifetimes updated: kernel SAs outlive a daemon killed outright, and
// the daemon restarted from its state file reinstalls exactly those SAs.
// Their counters in the kernel are exact where the record's are stale, and
// the tunnel keeps carrying traffic meanwhile. Any other SA under the ID
// still fails with EEXIST.
func (b *Backend) AddSAs(p dp.SAPair) error {
	in, err := saMsg(&p.In, false)
	if err != nil {
		return err
	}
	out, err := saMsg(&p.Out, false)
	if err != nil {
		return err
	}
	added, err := b.add(&p.In, in)
	if err != nil {
		return err
	}
	if _, err := b.add(&p.Out, out); err != nil {
		if added {
			_ = b.DeleteSA(p.In.ID)
		}
		return err
	}
	return nil
}

// add sends one XFRM_MSG_NEWSA and adopts an identical SA already there;
// added reports whether the SA is new.
func (b *Backend) add(sa *dp.SA, msg []byte) (added bool, err error) {
	err = b.c.request("adding SA "+sa.ID.String(), msg, 0, nil)
	if !errors.Is(err, syscall.EEXIST) {
		return err == nil, err
	}
	same := false
	gerr := b.c.request("reading SA "+sa.ID.String(), getSAMsg(sa.ID.Dst, sa.ID.SPI), msgNewSA, func(body []byte) error {
		encr, integ, err := parseSAKeys(body)
		same = err == nil && subtle.ConstantTimeCompare(encr, sa.EncrKey) == 1 &&
			subtle.ConstantTimeCompare(integ, sa.IntegKey) == 1
		return nil
	})
	if gerr != nil || !same {
		return false, err
	}
	return false, b.UpdateSA(*sa)
}

// UpdateSA sends XFRM_MSG_UPDSA. The kernel keeps the SA and its counters
// and takes over the lifetimes and, if the SA already had UDP
// encapsulation, the new ports.
func (b *Backend) UpdateSA(sa dp.SA) error {
	m, err := saMsg(&sa, true)
	if err != nil {
		return err
	}
	return notFound(b.c.request("updating SA "+sa.ID.String(), m, 0, nil))
}

// DeleteSA sends XFRM_MSG_DELSA.
func (b *Backend) DeleteSA(id dp.SAID) error {
	return notFound(b.c.request("deleting SA "+id.String(), delSAMsg(id.Dst, id.SPI), 0, nil))
}

// notFound maps the kernel's "no such SA" to dp.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w: %w", dp.ErrNotFound, err)
	}
	return err
}

func (b *Backend) getAE(id dp.SAID) (aevent, error) {
	var ev aevent
	err := b.c.request("reading SA "+id.String(), getAEMsg(id.Src, id.Dst, id.SPI), msgNewAE, func(body []byte) error {
		var err error
		ev, err = parseAEvent(body)
		return err
	})
	return ev, notFound(err)
}

func (b *Backend) getSA(id dp.SAID) (saFlags, error) {
	var f saFlags
	err := b.c.request("reading SA "+id.String(), getSAMsg(id.Dst, id.SPI), msgNewSA, func(body []byte) error {
		var err error
		f, err = parseUsersaInfo(body)
		return err
	})
	return f, notFound(err)
}

func (b *Backend) setAE(id dp.SAID, r *replayState) error {
	return notFound(b.c.request("writing replay state of SA "+id.String(), newAEMsg(id.Src, id.Dst, id.SPI, r), 0, nil))
}

// Counters reads the SA's lifetime counters with XFRM_MSG_GETAE.
func (b *Backend) Counters(id dp.SAID) (dp.Counters, error) {
	ev, err := b.getAE(id)
	if err != nil {
		return dp.Counters{}, err
	}
	return dp.Counters{Bytes: ev.bytes, Packets: ev.packets}, nil
}

// OutboundSeq reads oseq (and oseq_hi with ESN) with XFRM_MSG_GETAE.
func (b *Backend) OutboundSeq(id dp.SAID) (uint64, error) {
	ev, err := b.getAE(id)
	if err != nil {
		return 0, err
	}
	return uint64(ev.replay.oseqHi)<<32 | uint64(ev.replay.oseq), nil
}

// SetOutboundSeq reads the whole replay state and writes it back with the
// new counter: NEWAE replaces the structure, not a field. Packets sent
// between the read and the write are overwritten, which is harmless for
// an outbound SA only when seq is ahead of them, as RFC 6311 jumps are.
func (b *Backend) SetOutboundSeq(id dp.SAID, seq uint64) error {
	f, err := b.getSA(id)
	if err != nil {
		return err
	}
	if !f.esn && seq > 0xffffffff {
		return fmt.Errorf("SA %s: sequence number %#x needs ESN", id, seq)
	}
	ev, err := b.getAE(id)
	if err != nil {
		return err
	}
	ev.replay.oseq, ev.replay.oseqHi = uint32(seq), uint32(seq>>32)
	return b.setAE(id, &ev.replay)
}

// ReplayState reads the inbound replay state with XFRM_MSG_GETAE and
// converts the kernel's layout to dp.Replay's.
func (b *Backend) ReplayState(id dp.SAID) (dp.Replay, error) {
	ev, err := b.getAE(id)
	if err != nil {
		return dp.Replay{}, err
	}
	var legacyWindow uint32
	if !ev.replay.esnLayout {
		f, err := b.getSA(id)
		if err != nil {
			return dp.Replay{}, err
		}
		legacyWindow = uint32(f.legacyWindow)
	}
	return toReplay(&ev.replay, legacyWindow), nil
}

// SetReplayState writes the inbound replay state with XFRM_MSG_NEWAE,
// keeping the SA's outbound counter and bitmap size.
func (b *Backend) SetReplayState(id dp.SAID, r dp.Replay) error {
	f, err := b.getSA(id)
	if err != nil {
		return err
	}
	ev, err := b.getAE(id)
	if err != nil {
		return err
	}
	if err := fromReplay(&ev.replay, &r, f.esn); err != nil {
		return fmt.Errorf("SA %s: %w", id, err)
	}
	return b.setAE(id, &ev.replay)
}

// AdvanceReplay is a read-modify-write of the replay state. Packets that
// arrive in between are forgotten, which only matters if they lie above
// the advanced top, and RFC 6311 deltas are chosen so that they do not.
func (b *Backend) AdvanceReplay(id dp.SAID, delta uint64) error {
	f, err := b.getSA(id)
	if err != nil {
		return err
	}
	ev, err := b.getAE(id)
	if err != nil {
		return err
	}
	r := toReplay(&ev.replay, uint32(f.legacyWindow))
	if err := advance(&r, delta, f.esn); err != nil {
		return fmt.Errorf("SA %s: %w", id, err)
	}
	if err := fromReplay(&ev.replay, &r, f.esn); err != nil {
		return fmt.Errorf("SA %s: %w", id, err)
	}
	return b.setAE(id, &ev.replay)
}

// InstallPolicies sends XFRM_MSG_UPDPOLICY for every out, in and fwd
// policy the selectors expand to (ranges become prefixes and port masks).
func (b *Backend) InstallPolicies(p dp.Policies) error {
	ps, err := policyMsgs(&p)
	if err != nil {
		return err
	}
	for i := range ps {
		if err := b.c.request(fmt.Sprintf("installing policy reqid %d", p.ReqID), updPolicyMsg(&ps[i]), 0, nil); err != nil {
			return err
		}
	}
	return nil
}

// BypassPorts installs policies that let UDP from and to the given local
// ports (IKE's 500 and 4500) pass in the clear, in both address families.
// Without them, traffic selectors that cover the gateways' own addresses
// swallow IKE into the Child SA it negotiates: the responder's IKE_AUTH
// response, sent after it installed the SA, goes out as ESP the initiator
// cannot read yet. The policies stay in the kernel after Close.
func (b *Backend) BypassPorts(ports ...uint16) error {
	ps := bypassMsgs(ports)
	for i := range ps {
		if err := b.c.request(fmt.Sprintf("installing bypass policy for UDP port %d", ps[i].sel.sport|ps[i].sel.dport), updPolicyMsg(&ps[i]), 0, nil); err != nil {
			return err
		}
	}
	return nil
}

// RemovePolicies deletes what InstallPolicies installed, ignoring
// policies that are already gone, and reports the first other failure.
func (b *Backend) RemovePolicies(p dp.Policies) error {
	ps, err := policyMsgs(&p)
	if err != nil {
		return err
	}
	var first error
	for i := range ps {
		err := b.c.request(fmt.Sprintf("removing policy reqid %d", p.ReqID), delPolicyMsg(&ps[i].sel, ps[i].dir), 0, nil)
		if err != nil && !errors.Is(err, syscall.ENOENT) && first == nil {
			first = err
		}
	}
	return first
}
