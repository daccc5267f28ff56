package ike

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/wire"
)

// IKE_SA_INIT (RFC 7296 §1.2): negotiate transforms, exchange DH values and
// nonces, detect NATs (§2.23), and, under load, demand a cookie (§2.6).

const nonceLen = 32

// handleInitRequest answers an IKE_SA_INIT request on a handshake worker.
// No SA lock is held: the SA does not exist yet, or is found half-open.
func (e *Engine) handleInitRequest(local, remote netip.AddrPort, b []byte) {
	var m wire.Message
	if err := m.Parse(b); err != nil {
		e.stats.Malformed.Add(1)
		e.limitedDebug("malformed IKE_SA_INIT", "remote", remote, "err", err)
		return
	}
	h := &m.Header
	if h.MessageID != 0 {
		return
	}
	if sa := e.table.LookupHalfOpen(h.SPIi, remote); sa != nil {
		sa.mu.Lock()
		e.retransmitInit(sa, &m, local, remote)
		sa.mu.Unlock()
		return
	}
	req, err := parseInit(&m)
	if err != nil {
		e.stats.Malformed.Add(1)
		e.limitedDebug("bad IKE_SA_INIT request", "remote", remote, "err", err)
		e.initError(local, remote, h, wire.INVALID_SYNTAX, nil)
		return
	}
	if t := e.cfg.CookieThreshold; t >= 0 && e.halfOpen.Load() >= int64(t) {
		want := e.cookies.make(req.nonce, remote.Addr(), h.SPIi)
		if !e.cookies.valid(req.cookie, req.nonce, remote.Addr(), h.SPIi) {
			e.stats.CookiesSent.Add(1)
			e.initError(local, remote, h, wire.COOKIE, want)
			return
		}
	}

	var (
		conn   *Conn
		choice *crypto.Selection
		nerr   error = errNoProposal
	)
	for _, c := range e.cfg.Conns {
		if !c.matchAddrs(local.Addr(), remote.Addr()) {
			continue
		}
		choice, nerr = crypto.Select(req.proposals, c.IKEProposals, wire.ProtoIKE, req.ke.Group)
		if nerr == nil {
			conn = c
			break
		}
	}
	if conn == nil {
		var ne *crypto.NegotiationError
		if errors.As(nerr, &ne) {
			e.limitedDebug("no acceptable IKE proposal", "remote", remote, "notify", ne.Notify)
			e.initError(local, remote, h, ne.Notify, ne.NotifyData())
			return
		}
		e.limitedDebug("no connection for IKE_SA_INIT", "remote", remote, "local", local)
		e.initError(local, remote, h, wire.NO_PROPOSAL_CHOSEN, nil)
		return
	}
	kp, err := choice.DH.Generate(rand.Reader)
	if err != nil {
		e.log.Error("DH key generation failed", "err", err)
		return
	}
	gir, err := kp.SharedSecret(req.ke.Data)
	if err != nil {
		e.limitedDebug("bad KE value", "remote", remote, "err", err)
		e.initError(local, remote, h, wire.INVALID_SYNTAX, nil)
		return
	}

	sa := &SA{
		spiI:    h.SPIi,
		conn:    conn,
		local:   local,
		remote:  remote,
		created: e.now(),
		state:   StateInit,
		suite:   suiteOf(choice),
		hs:      &handshake{ni: bytes.Clone(req.nonce), nr: make([]byte, nonceLen)},
	}
	rand.Read(sa.hs.nr)
	sa.mu.Lock()
	defer sa.mu.Unlock()
	e.table.Insert(sa)
	if err := e.deriveIKEKeys(sa, gir); err != nil {
		e.table.Remove(sa)
		e.log.Error("key derivation failed", "err", err)
		return
	}
	clear(gir)
	sa.ext.Fragmentation = req.fragmentation && conn.Fragmentation
	sa.ext.SigHash = len(req.sigHashes) > 0
	sa.hs.peerSigHashes = req.sigHashes
	sa.ext.NATRemote = !req.natSrc.matches(natHash(h.SPIi, 0, remote))
	sa.ext.NATLocal = req.natDst.present && !req.natDst.matches(natHash(h.SPIi, 0, local))

	resp := sa.header(wire.IKE_SA_INIT, true, 0)
	var w wire.Builder
	w.Reset(make([]byte, 0, 512), resp)
	w.AddSA([]wire.Proposal{choice.Proposal})
	w.AddKE(wire.KE{Group: choice.DH.ID(), Data: kp.Public()})
	w.AddNonce(sa.hs.nr)
	e.addNATDetection(&w, sa)
	if sa.ext.Fragmentation {
		w.AddNotify(wire.Notify{Type: wire.IKEV2_FRAGMENTATION_SUPPORTED})
	}
	w.AddSignatureHashAlgorithms(supportedHashes...)
	e.addCertReq(&w, conn)
	msg := w.Finish()

	sa.hs.peerInitMsg = bytes.Clone(m.Raw)
	sa.hs.initMsg = msg
	e.table.AddHalfOpen(h.SPIi, remote, sa)
	e.halfOpen.Add(1)
	e.stats.exchange(wire.IKE_SA_INIT, true, false)
	e.send(sa, [][]byte{msg})
	sa.nextRecv = 1
	sa.expireAt = sa.created.Add(e.cfg.HalfOpenTimeout)
	e.rearm(sa)
}

// retransmitInit answers a repeated IKE_SA_INIT request with the same
// response. RFC 7296 §2.1 forbids recognising it by SPI and address alone;
// the whole request must match.
func (e *Engine) retransmitInit(sa *SA, m *wire.Message, local, remote netip.AddrPort) {
	if sa.hs == nil || sa.initiator || !bytes.Equal(m.Raw, sa.hs.peerInitMsg) {
		return
	}
	e.stats.RetransmitsIn.Add(1)
	e.cfg.Send(local, remote, sa.hs.initMsg)
}

// initError sends an unprotected IKE_SA_INIT response that carries only
// notify t: SPIr stays zero and no state is kept (RFC 7296 §1.2, §2.6).
func (e *Engine) initError(local, remote netip.AddrPort, req *wire.Header, t wire.NotifyType, data []byte) {
	h := wire.Header{SPIi: req.SPIi, Exchange: wire.IKE_SA_INIT, Flags: wire.FlagResponse}
	var w wire.Builder
	w.Reset(make([]byte, 0, 96), h)
	w.AddNotify(wire.Notify{Type: t, Data: data})
	e.stats.exchange(wire.IKE_SA_INIT, true, true)
	e.cfg.Send(local, remote, w.Finish())
}

// initRequest is what an IKE_SA_INIT request offers.
type initRequest struct {
	proposals     []wire.Proposal
	ke            wire.KE
	nonce         []byte
	cookie        []byte
	natSrc        natHashes
	natDst        natHashes
	fragmentation bool
	sigHashes     []uint16
}

var errNoProposal = errors.New("no connection matches the addresses")

func parseInit(m *wire.Message) (initRequest, error) {
	var r initRequest
	var haveSA, haveKE, haveNonce bool
	for _, p := range m.Payloads {
		var err error
		switch p.Type {
		case wire.PayloadSA:
			r.proposals, err = wire.ParseSA(nil, p.Body)
			haveSA = true
		case wire.PayloadKE:
			r.ke, err = wire.ParseKE(p.Body)
			haveKE = true
		case wire.PayloadNonce:
			r.nonce, err = wire.ParseNonce(p.Body)
			haveNonce = true
		case wire.PayloadNotify:
			var n wire.Notify
			if n, err = wire.ParseNotify(p.Body); err != nil {
				break
			}
			switch n.Type {
			case wire.COOKIE:
				r.cookie, err = n.Cookie()
			case wire.NAT_DETECTION_SOURCE_IP:
				err = r.natSrc.add(&n)
			case wire.NAT_DETECTION_DESTINATION_IP:
				err = r.natDst.add(&n)
			case wire.IKEV2_FRAGMENTATION_SUPPORTED:
				r.fragmentation = true
			case wire.SIGNATURE_HASH_ALGORITHMS:
				r.sigHashes, err = n.SignatureHashAlgorithms(nil)
			}
		}
		if err != nil {
			return r, err
		}
	}
	if !haveSA || !haveKE || !haveNonce {
		return r, &wire.Error{Notify: wire.INVALID_SYNTAX, Reason: "IKE_SA_INIT lacks SA, KE or Nonce"}
	}
	return r, nil
}

// natHashes collects NAT_DETECTION_* digests; a message may carry several
// SOURCE ones (RFC 7296 §2.23).
type natHashes struct {
	present bool
	h       [4][wire.NATDetectionLen]byte
	n       int
}

func (n *natHashes) add(p *wire.Notify) error {
	d, err := p.NATDetection()
	if err != nil {
		return err
	}
	n.present = true
	if n.n < len(n.h) {
		n.h[n.n] = d
		n.n++
	}
	return nil
}

// matches reports whether one digest equals h. A peer that sent no NAT
// detection at all is taken to be outside any NAT.
func (n *natHashes) matches(h [wire.NATDetectionLen]byte) bool {
	if !n.present {
		return true
	}
	for i := 0; i < n.n; i++ {
		if n.h[i] == h {
			return true
		}
	}
	return false
}

// natHash is SHA-1(SPIi | SPIr | IP | port), RFC 7296 §2.23.
func natHash(spii, spir uint64, ap netip.AddrPort) [wire.NATDetectionLen]byte {
	var b [8 + 8 + 16 + 2]byte
	binary.BigEndian.PutUint64(b[0:], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	a := ap.Addr().Unmap()
	n := 16
	if a.Is4() {
		v := a.As4()
		copy(b[16:], v[:])
		n = 4
	} else {
		v := a.As16()
		copy(b[16:], v[:])
	}
	binary.BigEndian.PutUint16(b[16+n:], ap.Port())
	return sha1.Sum(b[:16+n+2])
}

// addNATDetection appends both NAT detection notifies for sa's addresses, in
// the SPIs of the message being built.
func (e *Engine) addNATDetection(w *wire.Builder, sa *SA) {
	spir := sa.spiR
	if sa.initiator && sa.state == StateInit {
		spir = 0
	}
	src := natHash(sa.spiI, spir, sa.local)
	dst := natHash(sa.spiI, spir, sa.remote)
	w.AddNotify(wire.Notify{Type: wire.NAT_DETECTION_SOURCE_IP, Data: src[:]})
	w.AddNotify(wire.Notify{Type: wire.NAT_DETECTION_DESTINATION_IP, Data: dst[:]})
}

// supportedHashes are the RFC 7427 hash algorithms hike signs and verifies
// with; Identity (RFC 8420) is what Ed25519 needs.
var supportedHashes = []uint16{wire.HashSHA2_256, wire.HashSHA2_384, wire.HashSHA2_512, wire.HashIdentity}

// deriveIKEKeys computes SKEYSEED and the seven keys, and builds the SK
// protection of the SA.
func (e *Engine) deriveIKEKeys(sa *SA, gir []byte) error {
	keys, err := crypto.NewIKEKeys(sa.suite.PRF, sa.suite.Encr, sa.suite.Integ, gir, sa.hs.ni, sa.hs.nr, sa.spiI, sa.spiR)
	if err != nil {
		return err
	}
	sk, err := crypto.NewSK(sa.suite.Encr, sa.suite.Integ, keys, sa.initiator)
	if err != nil {
		keys.Zero()
		return err
	}
	sa.keys, sa.sk = keys, sk
	return nil
}

// initExchange is IKE_SA_INIT as initiator.
type initExchange struct {
	dh     crypto.KeyPair
	group  uint16
	cookie []byte
}

func (*initExchange) kind() wire.ExchangeType { return wire.IKE_SA_INIT }

func (x *initExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	if x.group == 0 {
		x.group = firstGroup(sa.conn.IKEProposals)
	}
	if x.dh == nil {
		g, err := crypto.LookupGroup(x.group)
		if err != nil {
			return err
		}
		if x.dh, err = g.Generate(rand.Reader); err != nil {
			return err
		}
	}
	if sa.hs.ni == nil {
		sa.hs.ni = make([]byte, nonceLen)
		rand.Read(sa.hs.ni)
	}
	// RFC 7296 §2.6: the cookie goes first, everything else unchanged.
	if x.cookie != nil {
		w.AddNotify(wire.Notify{Type: wire.COOKIE, Data: x.cookie})
	}
	w.AddSA(sa.conn.IKEProposals)
	w.AddKE(wire.KE{Group: x.group, Data: x.dh.Public()})
	w.AddNonce(sa.hs.ni)
	e.addNATDetection(w, sa)
	if sa.conn.Fragmentation {
		w.AddNotify(wire.Notify{Type: wire.IKEV2_FRAGMENTATION_SUPPORTED})
	}
	w.AddSignatureHashAlgorithms(supportedHashes...)
	return nil
}

func (x *initExchange) process(e *Engine, sa *SA, in *inbound) error {
	if n, ok := in.notify(wire.COOKIE); ok && x.cookie == nil {
		c, err := n.Cookie()
		if err != nil {
			return e.failInit(sa, err)
		}
		x.cookie = bytes.Clone(c)
		return e.restartInit(sa, x)
	}
	if n, ok := in.notify(wire.INVALID_KE_PAYLOAD); ok {
		g, err := n.InvalidKEGroup()
		if err != nil || g == x.group || !offersGroup(sa.conn.IKEProposals, g) {
			return e.failInit(sa, fmt.Errorf("peer wants DH group %d, which we do not offer", g))
		}
		x.group, x.dh = g, nil
		return e.restartInit(sa, x)
	}
	if t, ok := in.errorNotify(); ok {
		return e.failInit(sa, fmt.Errorf("peer answered %v", t))
	}
	var resp initRequest // the response carries the same payload kinds
	var err error
	m := wire.Message{Header: in.hdr, Payloads: in.payloads, Raw: in.raw}
	if resp, err = parseInit(&m); err != nil {
		return e.failInit(sa, err)
	}
	choice, err := crypto.CheckChoice(sa.conn.IKEProposals, resp.proposals, wire.ProtoIKE, x.group)
	if err != nil {
		return e.failInit(sa, err)
	}
	if resp.ke.Group != x.group {
		return e.failInit(sa, errors.New("responder's KE does not match its choice"))
	}
	gir, err := x.dh.SharedSecret(resp.ke.Data)
	if err != nil {
		return e.failInit(sa, err)
	}
	sa.spiR = in.hdr.SPIr
	sa.suite = suiteOf(choice)
	sa.hs.nr = bytes.Clone(resp.nonce)
	if err := e.deriveIKEKeys(sa, gir); err != nil {
		return e.failInit(sa, err)
	}
	clear(gir)
	x.dh = nil
	sa.hs.initMsg = in.request[0]
	sa.hs.peerInitMsg = bytes.Clone(in.raw)
	sa.hs.peerSigHashes = resp.sigHashes
	sa.ext.Fragmentation = resp.fragmentation && sa.conn.Fragmentation
	sa.ext.SigHash = len(resp.sigHashes) > 0
	sa.ext.NATRemote = !resp.natSrc.matches(natHash(sa.spiI, sa.spiR, in.remote))
	sa.ext.NATLocal = resp.natDst.present && !resp.natDst.matches(natHash(sa.spiI, sa.spiR, in.local))
	if sa.ext.NATLocal || sa.ext.NATRemote {
		// RFC 7296 §2.23: the initiator moves everything to port 4500.
		sa.local = netip.AddrPortFrom(sa.local.Addr(), natTPort(sa.local.Port()))
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), natTPort(sa.remote.Port()))
	}
	sa.state = StateAuth
	e.enqueue(sa, &authExchange{})
	return nil
}

// natTPort maps 500 to 4500 and leaves any other port (a test's ephemeral
// port, a peer already on 4500) alone.
func natTPort(p uint16) uint16 {
	if p == 500 {
		return 4500
	}
	return p
}

// restartInit sends IKE_SA_INIT again with Message ID 0, as a cookie or an
// INVALID_KE_PAYLOAD demands. The SA keeps its SPIi (RFC 7296 §1.2).
func (e *Engine) restartInit(sa *SA, x *initExchange) error {
	if x.cookie != nil && len(sa.queue) > 8 {
		return e.failInit(sa, errors.New("too many IKE_SA_INIT retries"))
	}
	sa.nextSend = 0
	sa.queue = append([]exchange{x}, sa.queue...)
	return nil
}

func (e *Engine) failInit(sa *SA, err error) error {
	e.remove(sa, "IKE_SA_INIT failed: "+err.Error())
	return err
}

func firstGroup(ps []wire.Proposal) uint16 {
	for _, p := range ps {
		for _, t := range p.Transforms {
			if t.Type == wire.TransformDH {
				return t.ID
			}
		}
	}
	return wire.DH_CURVE25519
}

func offersGroup(ps []wire.Proposal, g uint16) bool {
	for _, p := range ps {
		for _, t := range p.Transforms {
			if t.Type == wire.TransformDH && t.ID == g {
				return true
			}
		}
	}
	return false
}

// cookieSecret makes and checks stateless cookies (RFC 7296 §2.6): a
// version octet and a digest of Ni, the initiator's address and SPIi under
// a secret that rotates, so a cookie made just before a rotation still
// verifies.
type cookieSecret struct {
	mu      sync.RWMutex
	version byte
	cur     [32]byte
	prev    [32]byte
}

func (c *cookieSecret) rotate() {
	c.mu.Lock()
	c.prev = c.cur
	rand.Read(c.cur[:])
	c.version++
	c.mu.Unlock()
}

func (c *cookieSecret) make(ni []byte, addr netip.Addr, spii uint64) []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return cookieWith(c.version, &c.cur, ni, addr, spii)
}

func cookieWith(v byte, secret *[32]byte, ni []byte, addr netip.Addr, spii uint64) []byte {
	h := sha256.New()
	h.Write(secret[:])
	h.Write(ni)
	a := addr.Unmap().AsSlice()
	h.Write(a)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], spii)
	h.Write(s[:])
	out := make([]byte, 1, 17)
	out[0] = v
	return h.Sum(out)[:17]
}

func (c *cookieSecret) valid(cookie, ni []byte, addr netip.Addr, spii uint64) bool {
	if len(cookie) != 17 {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch cookie[0] {
	case c.version:
		return bytes.Equal(cookie, cookieWith(c.version, &c.cur, ni, addr, spii))
	case c.version - 1:
		return bytes.Equal(cookie, cookieWith(c.version-1, &c.prev, ni, addr, spii))
	}
	return false
}

func suiteOf(c *crypto.Selection) Suite {
	s := Suite{Encr: c.Encr, PRF: c.PRF, Integ: c.Integ}
	if c.DH != nil {
		s.DH = c.DH.ID()
	}
	return s
}
