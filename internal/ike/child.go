package ike

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"time"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/wire"
)

// Child SAs (RFC 7296 §1.3, §2.9, §2.17): what IKE_AUTH and CREATE_CHILD_SA
// share — ESP proposal choice, traffic-selector narrowing, KEYMAT, and
// installation in the data plane.

// childRequest is the Child SA part of a request.
type childRequest struct {
	proposals []wire.Proposal
	tsi, tsr  []wire.TrafficSelector
	rekeySPI  uint32 // REKEY_SA: the peer's inbound SPI of the SA it replaces
	rekey     bool
	transport bool
	nonce     []byte
	ke        *wire.KE
}

func parseChildRequest(ps []wire.Payload) (childRequest, error) {
	var r childRequest
	var haveSA, haveTSi, haveTSr bool
	for _, p := range ps {
		var err error
		switch p.Type {
		case wire.PayloadSA:
			r.proposals, err = wire.ParseSA(nil, p.Body)
			haveSA = true
		case wire.PayloadTSi:
			r.tsi, err = wire.ParseTS(nil, wire.PayloadTSi, p.Body)
			haveTSi = true
		case wire.PayloadTSr:
			r.tsr, err = wire.ParseTS(nil, wire.PayloadTSr, p.Body)
			haveTSr = true
		case wire.PayloadNonce:
			r.nonce, err = wire.ParseNonce(p.Body)
		case wire.PayloadKE:
			var ke wire.KE
			ke, err = wire.ParseKE(p.Body)
			r.ke = &ke
		case wire.PayloadNotify:
			var n wire.Notify
			if n, err = wire.ParseNotify(p.Body); err != nil {
				break
			}
			switch n.Type {
			case wire.REKEY_SA:
				var proto wire.ProtocolID
				proto, r.rekeySPI, err = n.RekeySA()
				r.rekey = err == nil && proto == wire.ProtoESP
			case wire.USE_TRANSPORT_MODE:
				r.transport = true
			}
		}
		if err != nil {
			return r, err
		}
	}
	if !haveSA || !haveTSi || !haveTSr {
		return r, errNoChild
	}
	return r, nil
}

var errNoChild = errors.New("request carries no Child SA")

// childFailure is a Child SA that could not be created; the IKE SA lives on
// and the response carries Notify (RFC 7296 §1.2: NO_PROPOSAL_CHOSEN,
// TS_UNACCEPTABLE, ...).
type childFailure struct {
	Notify wire.NotifyType
	Reason string
}

func (f *childFailure) Error() string { return f.Notify.String() + ": " + f.Reason }

// respondChild negotiates a Child SA as responder. It returns the new
// Child SA (not yet keyed) and the proposal to echo, or a *childFailure.
func (e *Engine) respondChild(sa *SA, req *childRequest) (*ChildSA, wire.Proposal, error) {
	if req.transport {
		// hike runs tunnel mode only; RFC 7296 §1.3.1 lets the responder
		// ignore the notify and answer for tunnel mode.
		req.transport = false
	}
	var lastErr error = &childFailure{Notify: wire.NO_PROPOSAL_CHOSEN, Reason: "no child config"}
	for _, cfg := range sa.conn.Children {
		ke := wire.DH_NONE
		if req.ke != nil {
			ke = req.ke.Group
		}
		choice, err := crypto.Select(req.proposals, cfg.ESPProposals, wire.ProtoESP, ke)
		if err != nil {
			lastErr = &childFailure{Notify: wire.NO_PROPOSAL_CHOSEN, Reason: err.Error()}
			continue
		}
		tsi := narrow(req.tsi, e.remoteTS(sa, cfg))
		tsr := narrow(req.tsr, e.localTS(sa, cfg))
		if len(tsi) == 0 || len(tsr) == 0 {
			lastErr = &childFailure{Notify: wire.TS_UNACCEPTABLE, Reason: "traffic selectors do not match " + cfg.Name}
			continue
		}
		if len(choice.PeerSPI) != 4 {
			lastErr = &childFailure{Notify: wire.NO_PROPOSAL_CHOSEN, Reason: "ESP proposal without a 4-octet SPI"}
			continue
		}
		c := &ChildSA{
			cfg:      cfg,
			spiOut:   binary.BigEndian.Uint32(choice.PeerSPI),
			spiIn:    e.allocChildSPI(),
			localTS:  tsr, // the responder's TSr is its own side
			remoteTS: tsi,
			created:  e.now(),
		}
		c.setAlgorithms(choice)
		p := choice.Proposal
		p.SPI = binary.BigEndian.AppendUint32(nil, c.spiIn)
		return c, p, nil
	}
	return nil, wire.Proposal{}, lastErr
}

// localTS returns our selectors for cfg on sa: configured ones, or our
// outer address (or virtual IP) when dynamic.
func (e *Engine) localTS(sa *SA, cfg *ChildConfig) []wire.TrafficSelector {
	if cfg.LocalDynamic || len(cfg.LocalTS) == 0 {
		if sa.initiator && sa.vip.IsValid() {
			return []wire.TrafficSelector{HostTS(sa.vip)}
		}
		return []wire.TrafficSelector{HostTS(sa.local.Addr().Unmap())}
	}
	return cfg.LocalTS
}

// remoteTS returns the selectors we accept for the peer's side.
func (e *Engine) remoteTS(sa *SA, cfg *ChildConfig) []wire.TrafficSelector {
	if cfg.RemoteDynamic || len(cfg.RemoteTS) == 0 {
		if !sa.initiator && sa.vip.IsValid() {
			return []wire.TrafficSelector{HostTS(sa.vip)}
		}
		return []wire.TrafficSelector{HostTS(sa.remote.Addr().Unmap())}
	}
	return cfg.RemoteTS
}

// narrow intersects the initiator's selectors with ours (RFC 7296 §2.9):
// every non-empty intersection of a pair is kept, so the result is a subset
// of both.
func narrow(offered, ours []wire.TrafficSelector) []wire.TrafficSelector {
	var out []wire.TrafficSelector
	for _, o := range offered {
		for _, p := range ours {
			if t, ok := intersect(o, p); ok {
				out = append(out, t)
			}
		}
	}
	return out
}

func intersect(a, b wire.TrafficSelector) (wire.TrafficSelector, bool) {
	if a.Type != b.Type || !a.Start.IsValid() || !b.Start.IsValid() {
		return wire.TrafficSelector{}, false
	}
	r := a
	if b.Start.Compare(a.Start) > 0 {
		r.Start = b.Start
	}
	if b.End.Compare(a.End) < 0 {
		r.End = b.End
	}
	if r.Start.Compare(r.End) > 0 {
		return r, false
	}
	switch {
	case a.Protocol == 0:
		r.Protocol = b.Protocol
	case b.Protocol != 0 && b.Protocol != a.Protocol:
		return r, false
	}
	r.StartPort = max(a.StartPort, b.StartPort)
	r.EndPort = min(a.EndPort, b.EndPort)
	if r.StartPort > r.EndPort {
		// An OPAQUE port range (start 65535, end 0) only survives if both
		// sides say so; hike never configures one.
		return r, false
	}
	return r, true
}

// subset reports whether every selector of got lies within one of offered:
// the initiator's check of a responder's narrowing.
func subset(got, offered []wire.TrafficSelector) bool {
	for _, g := range got {
		ok := false
		for _, o := range offered {
			if t, in := intersect(g, o); in && t.Start == g.Start && t.End == g.End &&
				t.StartPort == g.StartPort && t.EndPort == g.EndPort && t.Protocol == g.Protocol {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return len(got) > 0
}

// childSPIs keeps inbound ESP SPIs unique across the engine: with 100,000
// Child SAs a random 32-bit SPI collides about once, which the data plane
// would reject.
var childSPIs = struct {
	sync.Mutex
	m map[uint32]struct{}
}{m: make(map[uint32]struct{})}

func (e *Engine) allocChildSPI() uint32 {
	var b [4]byte
	childSPIs.Lock()
	defer childSPIs.Unlock()
	for {
		rand.Read(b[:])
		spi := binary.BigEndian.Uint32(b[:])
		if n := e.cfg.SPISlots; n > 1 {
			shift := bits.Len(uint(n - 1))
			spi = uint32(e.cfg.SPISlot)<<(32-shift) | spi>>shift
		}
		// SPIs 1-255 are reserved by IANA (RFC 4303 §2.1).
		if spi < 256 {
			continue
		}
		if _, taken := childSPIs.m[spi]; !taken {
			childSPIs.m[spi] = struct{}{}
			return spi
		}
	}
}

// claimChildSPI records an SPI restored from a record.
func claimChildSPI(spi uint32) {
	childSPIs.Lock()
	childSPIs.m[spi] = struct{}{}
	childSPIs.Unlock()
}

func releaseChildSPI(spi uint32) {
	childSPIs.Lock()
	delete(childSPIs.m, spi)
	childSPIs.Unlock()
}

// childKeys are a Child SA's keys, kept for the SA record (a restarted or
// taking-over node must reinstall the SA) and zeroed when the SA goes.
type childKeys struct {
	inE, inA, outE, outA []byte
}

func (k *childKeys) zero() {
	for _, b := range [][]byte{k.inE, k.inA, k.outE, k.outA} {
		clear(b)
	}
}

// keyChild derives KEYMAT for c (RFC 7296 §2.17) and installs it.
// weInitiated says whether we sent the request that created c, which
// decides that our outbound keys come first in KEYMAT.
func (e *Engine) keyChild(sa *SA, c *ChildSA, gir, ni, nr []byte, weInitiated bool) error {
	alg := dataplane.Algorithm{Encr: c.encr, EncrKeyBits: int(c.encrBits), Integ: c.integ}
	elen, ilen, err := alg.KeyLen()
	if err != nil {
		return err
	}
	keys, err := crypto.DeriveChildKeys(sa.suite.PRF, sa.keys.D, gir, ni, nr, elen, ilen)
	if err != nil {
		return err
	}
	defer keys.Zero()
	k := &childKeys{outE: bytes.Clone(keys.InitEncr), outA: bytes.Clone(keys.InitInteg),
		inE: bytes.Clone(keys.RespEncr), inA: bytes.Clone(keys.RespInteg)}
	if !weInitiated {
		k.outE, k.outA, k.inE, k.inA = k.inE, k.inA, k.outE, k.outA
	}
	c.keys = k
	if c.reqID == 0 {
		c.reqID = e.reqIDs.Add(1)
	}
	now := e.now()
	c.created = now
	if d := c.cfg.RekeyTime; d > 0 {
		c.rekeyAt = now.Add(jitter(d))
	}
	if d := c.cfg.Lifetime; d > 0 {
		c.expireAt = now.Add(d)
	}
	c.state = childInstalled
	e.touch(sa)
	return e.installChild(sa, c)
}

// installChild puts c's SAs and policies into the data plane.
func (e *Engine) installChild(sa *SA, c *ChildSA) error {
	c.state = childInstalled
	if e.cfg.Dataplane == nil {
		c.installed = true
		return nil
	}
	alg := dataplane.Algorithm{Encr: c.encr, EncrKeyBits: int(c.encrBits), Integ: c.integ}
	window := c.cfg.ReplayWindow
	if window == 0 {
		window = 1024
	}
	life := dataplane.Lifetime{HardBytes: c.cfg.LifeBytes, HardPackets: c.cfg.LifePackets,
		SoftBytes: c.cfg.LifeBytes / 10 * 9, SoftPackets: c.cfg.LifePackets / 10 * 9}
	pair := dataplane.SAPair{
		In: dataplane.SA{
			ID:    dataplane.SAID{SPI: c.spiIn, Src: sa.remote.Addr().Unmap(), Dst: sa.local.Addr().Unmap()},
			ReqID: c.reqID, Alg: alg, EncrKey: c.keys.inE, IntegKey: c.keys.inA, ESN: c.esn,
			ReplayWindow: window, Lifetime: life,
		},
		Out: dataplane.SA{
			ID:    dataplane.SAID{SPI: c.spiOut, Src: sa.local.Addr().Unmap(), Dst: sa.remote.Addr().Unmap()},
			ReqID: c.reqID, Alg: alg, EncrKey: c.keys.outE, IntegKey: c.keys.outA, ESN: c.esn, Lifetime: life,
		},
	}
	if sa.ext.NATLocal || sa.ext.NATRemote {
		pair.In.Encap = &dataplane.UDPEncap{SrcPort: sa.remote.Port(), DstPort: sa.local.Port()}
		pair.Out.Encap = &dataplane.UDPEncap{SrcPort: sa.local.Port(), DstPort: sa.remote.Port()}
	}
	if err := e.cfg.Dataplane.AddSAs(pair); err != nil {
		return fmt.Errorf("installing Child SA: %w", err)
	}
	if err := e.cfg.Dataplane.InstallPolicies(e.policies(sa, c)); err != nil {
		e.cfg.Dataplane.DeleteSA(pair.In.ID)
		e.cfg.Dataplane.DeleteSA(pair.Out.ID)
		return fmt.Errorf("installing policies: %w", err)
	}
	c.installed = true
	return nil
}

func (e *Engine) policies(sa *SA, c *ChildSA) dataplane.Policies {
	conv := func(ts []wire.TrafficSelector) []dataplane.TrafficSelector {
		out := make([]dataplane.TrafficSelector, len(ts))
		for i, t := range ts {
			out[i] = dataplane.TrafficSelector{Start: t.Start, End: t.End, Proto: t.Protocol,
				StartPort: t.StartPort, EndPort: t.EndPort}
		}
		return out
	}
	return dataplane.Policies{ReqID: c.reqID, Local: sa.local.Addr().Unmap(), Remote: sa.remote.Addr().Unmap(),
		LocalTS: conv(c.localTS), RemoteTS: conv(c.remoteTS)}
}

// uninstallChild removes c's SAs (and, unless a sibling with the same
// ReqID remains, its policies) from the data plane.
func (e *Engine) uninstallChild(sa *SA, c *ChildSA) {
	if c.spiIn != 0 {
		releaseChildSPI(c.spiIn)
	}
	if c.keys != nil {
		c.keys.zero()
		c.keys = nil
	}
	e.touch(sa)
	if !c.installed || e.cfg.Dataplane == nil {
		c.installed = false
		return
	}
	c.installed = false
	dp := e.cfg.Dataplane
	dp.DeleteSA(dataplane.SAID{SPI: c.spiIn, Src: sa.remote.Addr().Unmap(), Dst: sa.local.Addr().Unmap()})
	dp.DeleteSA(dataplane.SAID{SPI: c.spiOut, Src: sa.local.Addr().Unmap(), Dst: sa.remote.Addr().Unmap()})
	for _, o := range sa.children {
		if o != c && o.reqID == c.reqID && o.installed {
			return
		}
	}
	dp.RemovePolicies(e.policies(sa, c))
}

// updateChildEncap follows a NAT rebinding in the data plane. A new port
// only changes the UDP encapsulation, which the data plane updates in
// place; a new address changes the SA's identity in the kernel (destination
// and SPI), so the Child SA is rekeyed onto the new path instead.
func (e *Engine) updateChildEncap(sa *SA, c *ChildSA, oldRemote netip.AddrPort) {
	if !c.installed || e.cfg.Dataplane == nil || c.state != childInstalled {
		return
	}
	if oldRemote.Addr() != sa.remote.Addr() {
		e.enqueue(sa, &childRekeyExchange{old: c})
		return
	}
	in := dataplane.SA{ID: dataplane.SAID{SPI: c.spiIn, Src: addrOf(sa.remote), Dst: addrOf(sa.local)},
		Encap: &dataplane.UDPEncap{SrcPort: sa.remote.Port(), DstPort: sa.local.Port()}}
	out := dataplane.SA{ID: dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)},
		Encap: &dataplane.UDPEncap{SrcPort: sa.local.Port(), DstPort: sa.remote.Port()}}
	for _, u := range []dataplane.SA{in, out} {
		if err := e.cfg.Dataplane.UpdateSA(u); err != nil {
			e.log.Warn("cannot follow NAT rebinding; rekeying", "sa", sa.logID(), "spi", hex32(u.ID.SPI), "err", err)
			e.enqueue(sa, &childRekeyExchange{old: c})
			return
		}
	}
}

// deleteChild removes c from sa and the data plane.
func (e *Engine) deleteChild(sa *SA, c *ChildSA) {
	e.uninstallChild(sa, c)
	for i, o := range sa.children {
		if o == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			break
		}
	}
}

func (sa *SA) childByOutSPI(spi uint32) *ChildSA {
	for _, c := range sa.children {
		if c.spiOut == spi {
			return c
		}
	}
	return nil
}

func (sa *SA) childByInSPI(spi uint32) *ChildSA {
	for _, c := range sa.children {
		if c.spiIn == spi {
			return c
		}
	}
	return nil
}

func (c *ChildSA) cfgName() string {
	if c.cfg == nil {
		return ""
	}
	return c.cfg.Name
}

// childTimers rekeys or expires Child SAs whose time has come.
func (e *Engine) childTimers(sa *SA, now time.Time) {
	for _, c := range sa.children {
		if !c.expireAt.IsZero() && !now.Before(c.expireAt) && c.state != childDeleting {
			c.expireAt = time.Time{}
			e.enqueue(sa, &deleteExchange{children: []*ChildSA{c}})
			continue
		}
		if !c.rekeyAt.IsZero() && !now.Before(c.rekeyAt) && c.state == childInstalled {
			c.rekeyAt = time.Time{}
			e.enqueue(sa, &childRekeyExchange{old: c})
		}
	}
}

// jitter shortens a rekey time by up to 10% so that SAs created together do
// not all rekey together (RFC 7296 §2.8 asks for randomness here).
func jitter(d time.Duration) time.Duration {
	var b [2]byte
	rand.Read(b[:])
	return d - d/10*time.Duration(binary.BigEndian.Uint16(b[:]))/65535
}

func hex32(v uint32) string { return fmt.Sprintf("%08x", v) }

func addrOf(ap netip.AddrPort) netip.Addr { return ap.Addr().Unmap() }

func (c *ChildSA) setAlgorithms(s *crypto.Selection) {
	c.encr, c.encrBits, c.esn = s.Encr.ID, s.Encr.KeyBits, s.ESN
	c.integ = wire.AUTH_NONE
	if s.Integ != nil {
		c.integ = s.Integ.ID
	}
}

// checkESP is the initiator's check of the responder's ESP choice; it
// returns the selection and the responder's SPI.
func checkESP(offers, chosen []wire.Proposal, ke uint16) (*crypto.Selection, uint32, error) {
	s, err := crypto.CheckChoice(offers, chosen, wire.ProtoESP, ke)
	if err != nil {
		return nil, 0, err
	}
	if len(chosen[0].SPI) != 4 {
		return nil, 0, errors.New("ESP proposal without a 4-octet SPI")
	}
	return s, binary.BigEndian.Uint32(chosen[0].SPI), nil
}
