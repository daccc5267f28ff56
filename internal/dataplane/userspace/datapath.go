package userspace

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/esp"
	"github.com/hike-vpn/hike/internal/transport"
)

const (
	// maxInner is the largest inner packet: the IPv4 and IPv6 (without
	// jumbograms) length fields end there.
	maxInner = 65535
	// headroom is kept in front of an inner packet read from the device so
	// that Seal can write SPI, sequence number and IV before it in place:
	// 8 octets of ESP header and a 16-octet CBC IV at most.
	headroom = 32
	// tailroom covers padding (up to one 16-octet block plus the two
	// trailer octets) and the longest ICV (32 octets).
	tailroom = 64
)

var errNoRaw = errors.New("userspace: raw ESP is not enabled")

// batchSize is how many packets the device reader takes per wake-up when
// the device and the sender can batch.
const batchSize = 32

// batchReader is a device that can hand over several packets per wake-up.
// Packet i lands at bufs[i][off:] and is sizes[i] octets long.
type batchReader interface {
	readBatch(bufs [][]byte, off int, sizes []int) (int, error)
}

// readLoop moves packets from the device to the peers until the device is
// closed. It owns its buffers for its whole life: each packet is read
// behind the headroom, sealed in place and sent before the buffer is read
// into again.
func (b *Backend) readLoop() {
	br, ok := b.dev.(batchReader)
	if !ok {
		b.readLoopSingle()
		return
	}
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+maxInner+tailroom)
	}
	sizes := make([]int, batchSize)
	ds := make([]transport.Datagram, 0, batchSize)
	sas := make([]*saState, 0, batchSize)
	for {
		n, err := br.readBatch(bufs, headroom, sizes)
		if err != nil {
			if b.closing.Load() {
				return
			}
			b.readError(err)
			continue
		}
		for i := range n {
			st, pkt, p := b.seal(bufs[i], sizes[i])
			switch {
			case st == nil:
			case p.udp && b.sendBatch != nil:
				ds = append(ds, transport.Datagram{Kind: transport.KindESP, Local: p.local, Remote: p.remote, Data: pkt})
				sas = append(sas, st)
			default:
				b.send(st, pkt, p)
			}
		}
		if len(ds) > 0 {
			sent, _ := b.sendBatch(ds)
			b.stats.add(cTx, uint64(sent))
			b.stats.add(cSendFailed, uint64(len(ds)-sent))
			for i, st := range sas {
				b.checkLifetime(st)
				sas[i], ds[i] = nil, transport.Datagram{}
			}
			ds, sas = ds[:0], sas[:0]
		}
	}
}

func (b *Backend) readLoopSingle() {
	buf := make([]byte, headroom+maxInner+tailroom)
	for {
		n, err := b.dev.Read(buf[headroom : headroom+maxInner])
		if err != nil {
			if b.closing.Load() {
				return
			}
			b.readError(err)
			continue
		}
		b.sendPacket(buf, n)
	}
}

func (b *Backend) readError(err error) {
	b.log.Error("userspace: reading the device", "err", err)
	// A device error is not expected to heal by retrying at full speed;
	// back off so a persistent one cannot spin a core.
	time.Sleep(100 * time.Millisecond)
}

// sendPacket seals and sends the inner packet at buf[headroom:headroom+n].
func (b *Backend) sendPacket(buf []byte, n int) {
	if st, pkt, p := b.seal(buf, n); st != nil {
		b.send(st, pkt, p)
	}
}

// seal finds the outbound SA of the inner packet at buf[headroom:][:n] and
// seals it in place. st is nil if the packet was dropped.
func (b *Backend) seal(buf []byte, n int) (st *saState, pkt []byte, p *path) {
	inner := buf[headroom : headroom+n]
	f, ln, ok := parseFlow(inner)
	if !ok {
		b.stats.inc(cMalformed)
		return nil, nil, nil
	}
	inner = inner[:ln]
	nh := byte(nextHeaderIPv4)
	if !f.dst.Is4() {
		nh = nextHeaderIPv6
	}

	b.mu.RLock()
	pol := b.table.lookup(&f)
	if pol != nil {
		if outs := b.outbound[pol.reqID]; len(outs) > 0 {
			st = outs[len(outs)-1]
		}
	}
	b.mu.RUnlock()
	if pol == nil {
		b.stats.inc(cNoPolicy)
		return nil, nil, nil
	}
	if st == nil {
		b.stats.inc(cNoSA)
		return nil, nil, nil
	}

	h := st.sa.HeaderLen()
	if h > headroom || headroom+st.sa.SealedLen(ln)-h > len(buf) {
		b.stats.inc(cTooBig)
		return nil, nil, nil
	}
	st.mu.Lock()
	pkt, err := st.sa.Seal(buf[headroom-h:headroom-h], inner, nh)
	st.mu.Unlock()
	if err != nil {
		b.stats.inc(cSeal)
		if errors.Is(err, esp.ErrSeqExhausted) {
			b.hardExpire(st)
		}
		return nil, nil, nil
	}
	return st, pkt, st.path.Load()
}

func (b *Backend) send(st *saState, pkt []byte, p *path) {
	var err error
	if p.udp {
		err = b.sendESP(p.local, p.remote, pkt)
	} else if b.raw != nil {
		err = b.raw.send(p.local, p.remote.Addr(), pkt)
	} else {
		err = errNoRaw
	}
	if err != nil {
		b.stats.inc(cSendFailed)
	} else {
		b.stats.inc(cTx)
	}
	b.checkLifetime(st)
}

// HandleESP takes one ESP packet (from the SPI on) that arrived from remote
// at local, over UDP or as raw ESP. It decrypts in place, so pkt is
// overwritten, and does not keep pkt after it returns. It runs on the
// caller's goroutine and blocks only for the write to the device.
func (b *Backend) HandleESP(local netip.Addr, remote netip.AddrPort, pkt []byte) {
	if len(pkt) < 8 {
		b.stats.inc(cInvalid)
		return
	}
	spi := binary.BigEndian.Uint32(pkt)
	b.mu.RLock()
	st := b.inbound[spi]
	var pol *policy
	if st != nil {
		pol = b.policies[st.reqID]
	}
	b.mu.RUnlock()
	if st == nil {
		b.stats.inc(cUnknownSPI)
		return
	}

	// Decrypt in place, leaving room in front for the TUN device's
	// virtio-net header; every ESP header is longer than that.
	off := 0
	if b.tun != nil {
		off = vnetHdrLen
	}
	st.mu.Lock()
	plain, nh, err := st.sa.Open(pkt[off:off], pkt)
	st.mu.Unlock()
	switch {
	case err == nil:
	case errors.Is(err, esp.ErrReplay):
		b.stats.inc(cReplay)
		return
	case errors.Is(err, esp.ErrAuth):
		b.stats.inc(cAuth)
		return
	default:
		b.stats.inc(cInvalid)
		return
	}
	// The packet authenticated and moved the window, so it counts against
	// the lifetime whatever happens to it next.
	defer b.checkLifetime(st)
	if nh == esp.NoNextHeader {
		b.stats.inc(cDummy)
		return
	}
	f, n, ok := parseFlow(plain)
	if !ok || (nh == nextHeaderIPv4) != f.dst.Is4() || (nh != nextHeaderIPv4 && nh != nextHeaderIPv6) {
		b.stats.inc(cInvalid)
		return
	}
	if pol == nil || !pol.matchIn(&f) {
		b.stats.inc(cPolicyMismatch)
		return
	}
	if b.gro != nil && b.gro.add(plain[:n], &f) {
		b.stats.inc(cRx)
		return
	}
	if b.tun != nil {
		err = b.tun.writeHdr(pkt[:off+n])
	} else {
		_, err = b.dev.Write(plain[:n])
	}
	if err != nil {
		b.stats.inc(cTUNWrite)
		return
	}
	b.stats.inc(cRx)
}

// EndBatch writes the TCP segments HandleESP held back for coalescing
// (Config.CoalesceInbound). The daemon calls it when its receive loop has
// delivered a batch (transport.BatchEnder); without coalescing it does
// nothing.
func (b *Backend) EndBatch() {
	if b.gro != nil {
		b.gro.endBatch()
	}
}

func softReached(l *dataplane.Lifetime, s esp.Stats) bool {
	return (l.SoftBytes != 0 && s.Bytes >= l.SoftBytes) || (l.SoftPackets != 0 && s.Packets >= l.SoftPackets)
}

func hardReached(l *dataplane.Lifetime, s esp.Stats) bool {
	return (l.HardBytes != 0 && s.Bytes >= l.HardBytes) || (l.HardPackets != 0 && s.Packets >= l.HardPackets)
}

// checkLifetime fires the soft and hard volume events of an SA. It costs
// one pointer load for SAs without volume limits.
func (b *Backend) checkLifetime(st *saState) {
	l := st.life.Load()
	if l == nil {
		return
	}
	s := st.sa.Stats()
	if hardReached(l, s) {
		b.hardExpire(st)
		return
	}
	if softReached(l, s) {
		b.softExpire(st)
	}
}

func (b *Backend) softExpire(st *saState) {
	if st.soft.Load() || st.soft.Swap(true) {
		return
	}
	b.emit(dataplane.Event{Kind: dataplane.EventSoftExpire, SA: st.id, ReqID: st.reqID})
}

// hardExpire removes the SA, as the kernel does, and tells the daemon.
func (b *Backend) hardExpire(st *saState) {
	if st.hard.Load() || st.hard.Swap(true) {
		return
	}
	b.mu.Lock()
	b.removeLocked(st)
	b.mu.Unlock()
	b.emit(dataplane.Event{Kind: dataplane.EventHardExpire, SA: st.id, ReqID: st.reqID})
}

// Close implements dataplane.Backend. Unlike the kernel's, userspace SAs
// cannot outlive the process: Close removes the routes and the TUN device
// and with them every SA and policy.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		if b.router != nil {
			b.routeMu.Lock()
			for pfx, ours := range b.routes {
				if ours {
					if e := b.router.del(pfx); e != nil {
						b.log.Warn("userspace: removing route", "prefix", pfx, "err", e)
					}
				}
			}
			b.routes = map[netip.Prefix]bool{}
			b.routeMu.Unlock()
		}
		err = b.dev.Close()
		if b.raw != nil {
			b.raw.close()
		}
		b.wg.Wait()
		if b.router != nil {
			b.router.close()
		}
		b.evMu.Lock()
		b.evClosed = true
		close(b.events)
		b.evMu.Unlock()
	})
	return err
}
