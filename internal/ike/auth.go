package ike

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/wire"
)

// IKE_AUTH (RFC 7296 §1.2, §2.15): prove identities, agree on RFC 6311 and
// other extensions, hand out a virtual IP, and create the first Child SA.

// authRequest is what an IKE_AUTH message carries; the response has the
// same shape with IDr in place of IDi.
type authRequest struct {
	id          wire.ID
	idr         *wire.ID
	auth        wire.Auth
	certs       [][]byte
	certReq     bool
	cp          *wire.CP
	initial     bool
	midSync     bool
	replaySync  bool
	child       childRequest
	childErr    error
	childNotify wire.NotifyType
	window      uint32 // SET_WINDOW_SIZE (RFC 7296 §2.3)
	hasChild    bool
	cpAttrs     [8]wire.CPAttribute
}

func parseAuth(ps []wire.Payload, idType wire.PayloadType) (authRequest, error) {
	var r authRequest
	var haveID, haveAuth bool
	for _, p := range ps {
		var err error
		switch p.Type {
		case idType:
			r.id, err = wire.ParseID(p.Type, p.Body)
			haveID = true
		case wire.PayloadIDr:
			var id wire.ID
			if id, err = wire.ParseID(p.Type, p.Body); err == nil {
				r.idr = &id
			}
		case wire.PayloadAUTH:
			r.auth, err = wire.ParseAuth(p.Body)
			haveAuth = true
		case wire.PayloadCERT:
			var c wire.Cert
			if c, err = wire.ParseCert(p.Body); err == nil && c.Encoding == wire.CertX509Signature {
				r.certs = append(r.certs, c.Data)
			}
		case wire.PayloadCERTREQ:
			r.certReq = true
		case wire.PayloadCP:
			var cp wire.CP
			if cp, err = wire.ParseCP(r.cpAttrs[:0], p.Body); err == nil {
				r.cp = &cp
			}
		case wire.PayloadNotify:
			var n wire.Notify
			if n, err = wire.ParseNotify(p.Body); err != nil {
				break
			}
			switch {
			case n.Type == wire.INITIAL_CONTACT:
				r.initial = true
			case n.Type == wire.IKEV2_MESSAGE_ID_SYNC_SUPPORTED:
				r.midSync = true
			case n.Type == wire.IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED:
				r.replaySync = true
			case n.Type == wire.SET_WINDOW_SIZE:
				r.window, err = n.WindowSize()
			case n.Type.IsError() && r.childNotify == 0:
				r.childNotify = n.Type
			}
		}
		if err != nil {
			return r, err
		}
	}
	if !haveID || !haveAuth {
		return r, &wire.Error{Notify: wire.INVALID_SYNTAX, Payload: wire.PayloadAUTH, Reason: "IKE_AUTH lacks ID or AUTH"}
	}
	r.child, r.childErr = parseChildRequest(ps)
	r.hasChild = r.childErr == nil
	if errors.Is(r.childErr, errNoChild) {
		r.childErr = nil
	}
	return r, r.childErr
}

// respondAuth authenticates the initiator and answers IKE_AUTH.
func (e *Engine) respondAuth(sa *SA, in *inbound, w *wire.Builder) (postAction, error) {
	if sa.initiator || sa.state != StateInit || sa.hs == nil {
		return postNone, errDrop
	}
	req, err := parseAuth(in.payloads, wire.PayloadIDi)
	if err != nil {
		return postDeleteSA, err
	}
	conn := e.authConn(sa, req.id)
	if conn == nil {
		e.log.Info("no connection for peer identity", "sa", sa.logID(), "remote", sa.remote, "id", idString(req.id))
		w.AddNotify(wire.Notify{Type: wire.AUTHENTICATION_FAILED})
		return postDeleteSA, nil
	}
	sa.conn = conn
	signed := crypto.SignedOctets(nil, sa.suite.PRF, sa.hs.peerInitMsg, sa.hs.nr, sa.keys.Pi, req.id.Raw)
	if err := e.verifyPeer(sa, &req, signed); err != nil {
		e.log.Info("peer authentication failed", "sa", sa.logID(), "remote", sa.remote, "id", idString(req.id), "err", err)
		w.AddNotify(wire.Notify{Type: wire.AUTHENTICATION_FAILED})
		return postDeleteSA, nil
	}
	sa.peerID = wire.ID{Type: req.id.Type, Data: bytes.Clone(req.id.Data)}
	// hike keeps one request in flight whatever the peer's window; the
	// window still matters to RFC 6311, whose M1 must clear it.
	sa.peerWindow = max(req.window, 1)

	// Our identity and AUTH.
	localID := sa.ourID()
	w.AddID(wire.PayloadIDr, localID)
	if conn.LocalAuth.Method == AuthPubKey && conn.LocalAuth.Cert != nil {
		w.AddCert(wire.Cert{Encoding: wire.CertX509Signature, Data: conn.LocalAuth.Cert.Raw})
		for _, c := range conn.LocalAuth.Chain {
			w.AddCert(wire.Cert{Encoding: wire.CertX509Signature, Data: c.Raw})
		}
	}
	idBody := localID.Append(nil)
	ours := crypto.SignedOctets(nil, sa.suite.PRF, sa.hs.initMsg, sa.hs.ni, sa.keys.Pr, idBody)
	method, data, err := e.signAuth(sa, ours)
	if err != nil {
		e.log.Error("cannot compute AUTH", "sa", sa.logID(), "err", err)
		w.ResetChain(w.Finish()[:0])
		w.AddNotify(wire.Notify{Type: wire.AUTHENTICATION_FAILED})
		return postDeleteSA, nil
	}
	w.AddAuth(wire.Auth{Method: method, Data: data})

	// RFC 6311 §5: a responder asserts a capability only if the initiator did.
	sa.ext.MIDSync = req.midSync && conn.MIDSync
	sa.ext.ReplaySync = req.replaySync && conn.ReplaySync
	if sa.ext.MIDSync {
		w.AddNotify(wire.Notify{Type: wire.IKEV2_MESSAGE_ID_SYNC_SUPPORTED})
	}
	if sa.ext.ReplaySync {
		w.AddNotify(wire.Notify{Type: wire.IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED})
	}

	if req.cp != nil && req.cp.Type == wire.CFG_REQUEST {
		if err := e.assignVIP(sa, req.cp, w); err != nil {
			e.log.Info("no virtual IP", "sa", sa.logID(), "err", err)
			w.AddNotify(wire.Notify{Type: wire.INTERNAL_ADDRESS_FAILURE})
			req.hasChild = false
		}
	}
	e.established(sa)
	if req.initial {
		e.initialContact(sa)
	}
	if req.hasChild {
		c, prop, err := e.respondChild(sa, &req.child)
		if err == nil {
			err = e.keyChild(sa, c, nil, sa.hs.ni, sa.hs.nr, false)
		}
		var f *childFailure
		switch {
		case err == nil:
			sa.children = append(sa.children, c)
			w.AddSA([]wire.Proposal{prop})
			w.AddTS(wire.PayloadTSi, c.remoteTS)
			w.AddTS(wire.PayloadTSr, c.localTS)
			e.log.Info("Child SA established", "sa", sa.logID(), "child", c.cfgName(),
				"spi_in", hex32(c.spiIn), "spi_out", hex32(c.spiOut), "local_ts", tsString(c.localTS), "remote_ts", tsString(c.remoteTS))
		case errors.As(err, &f):
			e.log.Info("Child SA refused", "sa", sa.logID(), "err", err)
			w.AddNotify(wire.Notify{Type: f.Notify})
		default:
			e.log.Warn("Child SA failed", "sa", sa.logID(), "err", err)
			w.AddNotify(wire.Notify{Type: wire.NO_PROPOSAL_CHOSEN})
		}
	}
	sa.hs = nil
	return postNone, nil
}

// authConn picks the connection for a peer identity: the one chosen in
// IKE_SA_INIT if its remote identity matches, otherwise another with the
// same addresses and suite that does (strongSwan calls this switching
// configs).
func (e *Engine) authConn(sa *SA, id wire.ID) *Conn {
	if sa.conn.acceptsID(id) {
		return sa.conn
	}
	for _, c := range e.cfg.Conns {
		if c != sa.conn && c.matchAddrs(addrOf(sa.local), addrOf(sa.remote)) && c.acceptsID(id) &&
			offersSuite(c.IKEProposals, sa.suite) {
			return c
		}
	}
	return nil
}

func offersSuite(ps []wire.Proposal, s Suite) bool {
	for _, p := range ps {
		var encr, prf, dh bool
		integ := s.Integ == nil
		for _, t := range p.Transforms {
			switch t.Type {
			case wire.TransformENCR:
				encr = encr || (t.ID == s.Encr.ID && t.KeyLen == s.Encr.KeyBits)
			case wire.TransformPRF:
				prf = prf || t.ID == s.PRF.ID
			case wire.TransformINTEG:
				integ = integ || (s.Integ != nil && t.ID == s.Integ.ID)
			case wire.TransformDH:
				dh = dh || t.ID == s.DH
			}
		}
		if encr && prf && integ && dh {
			return true
		}
	}
	return false
}

// verifyPeer checks the peer's AUTH payload over signed.
func (e *Engine) verifyPeer(sa *SA, r *authRequest, signed []byte) error {
	a := &sa.conn.RemoteAuth
	switch a.Method {
	case AuthPSK:
		if r.auth.Method != wire.AuthSharedKey {
			return fmt.Errorf("peer used auth method %d, policy wants PSK", r.auth.Method)
		}
		return crypto.VerifyPSKAuth(sa.suite.PRF, a.PSK, signed, r.auth.Data)
	case AuthPubKey:
		if len(r.certs) == 0 {
			return errors.New("no certificate")
		}
		cert, err := x509.ParseCertificate(r.certs[0])
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		inter := x509.NewCertPool()
		for _, raw := range r.certs[1:] {
			if c, err := x509.ParseCertificate(raw); err == nil {
				inter.AddCert(c)
			}
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: a.CAs, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: time.Now()}); err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		if !certMatchesID(cert, r.id) {
			return fmt.Errorf("identity %s is not in the peer's certificate", idString(r.id))
		}
		return crypto.VerifyAuth(cert.PublicKey, r.auth.Method, r.auth.Data, signed, supportedHashes)
	}
	return errors.New("connection has no remote authentication")
}

// signAuth computes our AUTH payload over signed.
func (e *Engine) signAuth(sa *SA, signed []byte) (wire.AuthMethod, []byte, error) {
	a := &sa.conn.LocalAuth
	switch a.Method {
	case AuthPSK:
		return wire.AuthSharedKey, crypto.PSKAuth(nil, sa.suite.PRF, a.PSK, signed), nil
	case AuthPubKey:
		var hashes []uint16
		if sa.ext.SigHash {
			hashes = sa.hs.peerSigHashes
		}
		return crypto.SignAuth(a.Key, hashes, signed)
	}
	return 0, nil, errors.New("connection has no local authentication")
}

// certMatchesID reports whether cert vouches for id (RFC 7296 §3.5: the
// identity must be in the certificate's subject or subjectAltName).
func certMatchesID(cert *x509.Certificate, id wire.ID) bool {
	switch id.Type {
	case wire.ID_DER_ASN1_DN:
		return bytes.Equal(cert.RawSubject, id.Data)
	case wire.ID_FQDN:
		for _, n := range cert.DNSNames {
			if strings.EqualFold(n, string(id.Data)) {
				return true
			}
		}
	case wire.ID_RFC822_ADDR:
		for _, n := range cert.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) {
				return true
			}
		}
	case wire.ID_IPV4_ADDR, wire.ID_IPV6_ADDR:
		for _, ip := range cert.IPAddresses {
			if ip.Equal(net.IP(id.Data)) {
				return true
			}
		}
	}
	return false
}

// addCertReq asks for a certificate signed by one of our CAs (RFC 7296
// §3.7: SHA-1 digests of the CAs' SubjectPublicKeyInfo).
func (e *Engine) addCertReq(w *wire.Builder, c *Conn) {
	if c.RemoteAuth.Method != AuthPubKey || len(c.RemoteAuth.CACerts) == 0 {
		return
	}
	var hashes []byte
	for _, ca := range c.RemoteAuth.CACerts {
		h := sha1.Sum(ca.RawSubjectPublicKeyInfo)
		hashes = append(hashes, h[:]...)
	}
	w.AddCertReq(wire.CertReq{Encoding: wire.CertX509Signature, Authorities: hashes})
}

// assignVIP answers a CP request with an address from the pool.
func (e *Engine) assignVIP(sa *SA, cp *wire.CP, w *wire.Builder) error {
	pool := sa.conn.Pool
	if pool == nil {
		return errors.New("connection has no pool")
	}
	want4, want6 := false, false
	for _, a := range cp.Attributes {
		switch a.Type {
		case wire.INTERNAL_IP4_ADDRESS:
			want4 = true
		case wire.INTERNAL_IP6_ADDRESS:
			want6 = true
		}
	}
	v6pool := pool.first.Is6()
	if (v6pool && !want6) || (!v6pool && !want4) {
		return errors.New("peer asks for no address of the pool's family")
	}
	a, err := pool.Acquire(wire.ID{Type: sa.peerID.Type, Data: sa.peerID.Data})
	if err != nil {
		return err
	}
	sa.vip = a
	reply := wire.CP{Type: wire.CFG_REPLY}
	if a.Is4() {
		v := a.As4()
		reply.Attributes = []wire.CPAttribute{{Type: wire.INTERNAL_IP4_ADDRESS, Value: v[:]}}
	} else {
		v := a.As16()
		// RFC 7296 §3.15.1: an IPv6 address is followed by its prefix length.
		reply.Attributes = []wire.CPAttribute{{Type: wire.INTERNAL_IP6_ADDRESS, Value: append(v[:], 128)}}
	}
	w.AddCP(reply)
	e.log.Info("virtual IP assigned", "sa", sa.logID(), "vip", a, "pool", pool.Name)
	return nil
}

// established completes an IKE SA's handshake.
func (e *Engine) established(sa *SA) {
	now := e.now()
	sa.state = StateEstablished
	sa.established = now
	sa.lastHeard = now
	sa.expireAt = time.Time{}
	if d := sa.conn.Lifetime; d > 0 {
		sa.expireAt = now.Add(d)
	}
	if d := sa.conn.RekeyTime; d > 0 {
		sa.rekeyAt = now.Add(jitter(d))
	}
	if d := sa.conn.DPDDelay; d > 0 {
		sa.dpdAt = now.Add(d)
	}
	if !sa.initiator {
		e.table.RemoveHalfOpen(sa.spiI, sa.remote, sa)
	}
	e.halfOpen.Add(-1)
	e.stats.Established.Add(1)
	sa.conn.active.Add(1)
	e.table.addPeer(sa)
	e.touch(sa)
	e.log.Info("IKE SA established", "sa", sa.logID(), "conn", sa.conn.Name, "remote", sa.remote,
		"peer_id", idString(sa.peerID), "mid_sync", sa.ext.MIDSync, "replay_sync", sa.ext.ReplaySync,
		"nat", sa.ext.NATLocal || sa.ext.NATRemote)
}

// initialContact deletes the peer's other IKE SAs under this connection
// (RFC 7296 §2.4: the peer has rebooted and lost them).
func (e *Engine) initialContact(sa *SA) {
	for _, old := range e.table.peerSAs(sa) {
		if old == sa {
			continue
		}
		e.log.Info("INITIAL_CONTACT: removing old IKE SA", "sa", old.logID(), "new", sa.logID())
		e.async(old, func() { e.remove(old, "replaced after INITIAL_CONTACT") })
	}
}

// async runs f on a worker with sa locked. Used where the current worker
// already holds another SA's lock and taking a second would risk deadlock.
func (e *Engine) async(sa *SA, f func()) {
	go func() {
		sa.mu.Lock()
		defer sa.mu.Unlock()
		if sa.state != StateDead {
			f()
			e.rearmIfAlive(sa)
		}
	}()
}

func (e *Engine) rearmIfAlive(sa *SA) {
	if sa.state != StateDead {
		e.rearm(sa)
	}
}

// authExchange is IKE_AUTH as initiator.
type authExchange struct {
	child  *ChildSA
	offers []wire.Proposal
	tsi    []wire.TrafficSelector
	tsr    []wire.TrafficSelector
}

func (*authExchange) kind() wire.ExchangeType { return wire.IKE_AUTH }

func (x *authExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	conn := sa.conn
	localID := sa.ourID()
	w.AddID(wire.PayloadIDi, localID)
	if conn.LocalAuth.Method == AuthPubKey && conn.LocalAuth.Cert != nil {
		w.AddCert(wire.Cert{Encoding: wire.CertX509Signature, Data: conn.LocalAuth.Cert.Raw})
		for _, c := range conn.LocalAuth.Chain {
			w.AddCert(wire.Cert{Encoding: wire.CertX509Signature, Data: c.Raw})
		}
	}
	e.addCertReq(w, conn)
	if conn.RemoteIDHint.Type != 0 {
		w.AddID(wire.PayloadIDr, conn.RemoteIDHint)
	}
	idBody := localID.Append(nil)
	signed := crypto.SignedOctets(nil, sa.suite.PRF, sa.hs.initMsg, sa.hs.nr, sa.keys.Pi, idBody)
	method, data, err := e.signAuth(sa, signed)
	if err != nil {
		return err
	}
	w.AddAuth(wire.Auth{Method: method, Data: data})
	// INITIAL_CONTACT tells the peer to drop every other SA with us (RFC
	// 7296 §2.4): only true when we have none for this connection, for
	// instance not after a restart that restored some.
	if !e.hasOtherSA(sa) {
		w.AddNotify(wire.Notify{Type: wire.INITIAL_CONTACT})
	}
	if conn.RequestVIP {
		w.AddCP(wire.CP{Type: wire.CFG_REQUEST, Attributes: []wire.CPAttribute{{Type: wire.INTERNAL_IP4_ADDRESS}}})
	}
	// RFC 6311 §5: the initiator asserts its capabilities in its first
	// IKE_AUTH request.
	if conn.MIDSync {
		w.AddNotify(wire.Notify{Type: wire.IKEV2_MESSAGE_ID_SYNC_SUPPORTED})
	}
	if conn.ReplaySync {
		w.AddNotify(wire.Notify{Type: wire.IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED})
	}
	if len(conn.Children) > 0 {
		cfg := conn.Children[0]
		x.child = &ChildSA{cfg: cfg, spiIn: e.allocChildSPI()}
		x.offers = withSPI(cfg.ESPProposals, x.child.spiIn)
		x.tsi = e.localTS(sa, cfg)
		if conn.RequestVIP {
			// The address is not known yet: offer everything and let the
			// responder narrow to the VIP (RFC 7296 §2.9).
			x.tsi = []wire.TrafficSelector{PrefixTS(netip.MustParsePrefix("0.0.0.0/0"))}
		}
		x.tsr = e.remoteTS(sa, cfg)
		w.AddSA(x.offers)
		w.AddTS(wire.PayloadTSi, x.tsi)
		w.AddTS(wire.PayloadTSr, x.tsr)
	}
	return nil
}

func (x *authExchange) process(e *Engine, sa *SA, in *inbound) error {
	resp, err := parseAuth(in.payloads, wire.PayloadIDr)
	if err != nil && !errors.Is(err, errNoChild) {
		if t, ok := in.errorNotify(); ok {
			err = fmt.Errorf("peer answered %v", t)
		}
		x.releaseChild()
		e.remove(sa, "IKE_AUTH failed")
		return err
	}
	if !sa.conn.acceptsID(resp.id) {
		x.releaseChild()
		e.remove(sa, "unexpected responder identity")
		return fmt.Errorf("responder identity %s does not match policy", idString(resp.id))
	}
	signed := crypto.SignedOctets(nil, sa.suite.PRF, sa.hs.peerInitMsg, sa.hs.ni, sa.keys.Pr, resp.id.Raw)
	if err := e.verifyPeer(sa, &resp, signed); err != nil {
		x.releaseChild()
		e.remove(sa, "responder authentication failed")
		return err
	}
	sa.peerID = wire.ID{Type: resp.id.Type, Data: bytes.Clone(resp.id.Data)}
	sa.peerWindow = max(resp.window, 1)
	sa.ext.MIDSync = resp.midSync && sa.conn.MIDSync
	sa.ext.ReplaySync = resp.replaySync && sa.conn.ReplaySync
	if resp.cp != nil && resp.cp.Type == wire.CFG_REPLY {
		for _, a := range resp.cp.Attributes {
			if a.Type == wire.INTERNAL_IP4_ADDRESS && len(a.Value) == 4 {
				sa.vip = netip.AddrFrom4([4]byte(a.Value))
			}
		}
	}
	hs := sa.hs
	e.established(sa)
	if x.child != nil {
		if err := x.finishChild(e, sa, &resp, hs); err != nil {
			e.log.Info("first Child SA failed", "sa", sa.logID(), "err", err)
			x.releaseChild()
		}
	}
	sa.hs = nil
	for _, cfg := range sa.conn.Children[min(1, len(sa.conn.Children)):] {
		e.enqueue(sa, &createChildExchange{cfg: cfg})
	}
	if f := sa.onUp; f != nil {
		sa.onUp = nil
		f(sa.info(), nil)
	}
	return nil
}

// finishChild completes the first Child SA from the IKE_AUTH response.
func (x *authExchange) finishChild(e *Engine, sa *SA, resp *authRequest, hs *handshake) error {
	if resp.childNotify != 0 {
		return fmt.Errorf("peer refused the Child SA: %v", resp.childNotify)
	}
	if !resp.hasChild {
		return errors.New("response carries no Child SA")
	}
	choice, spi, err := checkESP(x.offers, resp.child.proposals, wire.DH_NONE)
	if err != nil {
		return err
	}
	tsi := x.tsi
	if sa.vip.IsValid() {
		tsi = []wire.TrafficSelector{HostTS(sa.vip)}
	}
	if !subset(resp.child.tsi, tsi) || !subset(resp.child.tsr, x.tsr) {
		return errors.New("responder widened the traffic selectors")
	}
	c := x.child
	c.spiOut = spi
	c.setAlgorithms(choice)
	c.localTS, c.remoteTS = resp.child.tsi, resp.child.tsr
	if err := e.keyChild(sa, c, nil, hs.ni, hs.nr, true); err != nil {
		return err
	}
	sa.children = append(sa.children, c)
	x.child = nil
	e.log.Info("Child SA established", "sa", sa.logID(), "child", c.cfgName(),
		"spi_in", hex32(c.spiIn), "spi_out", hex32(c.spiOut), "local_ts", tsString(c.localTS), "remote_ts", tsString(c.remoteTS))
	return nil
}

func (x *authExchange) releaseChild() {
	if x.child != nil {
		releaseChildSPI(x.child.spiIn)
		x.child = nil
	}
}

func (x *authExchange) abandon(error) { x.releaseChild() }

// withSPI returns copies of ps that carry spi, as every ESP proposal of a
// request must (RFC 7296 §3.3.1).
func withSPI(ps []wire.Proposal, spi uint32) []wire.Proposal {
	out := make([]wire.Proposal, len(ps))
	b := binary.BigEndian.AppendUint32(nil, spi)
	for i, p := range ps {
		p.SPI = b
		p.Num = uint8(i + 1)
		out[i] = p
	}
	return out
}

func idString(id wire.ID) string {
	switch id.Type {
	case wire.ID_FQDN, wire.ID_RFC822_ADDR, wire.ID_KEY_ID:
		return string(id.Data)
	case wire.ID_IPV4_ADDR, wire.ID_IPV6_ADDR:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case wire.ID_DER_ASN1_DN:
		if s, ok := dnString(id.Data); ok {
			return s
		}
		return "DN:" + fmt.Sprintf("%x", id.Data)
	}
	return fmt.Sprintf("%d:%x", id.Type, id.Data)
}

func tsString(ts []wire.TrafficSelector) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.Start.String())
		if t.End != t.Start {
			b.WriteString("-" + t.End.String())
		}
	}
	return b.String()
}

// ourID is the identity we assert: the configured one, or by default our
// IKE address (what strongSwan does too).
func (sa *SA) ourID() wire.ID {
	if sa.conn.LocalID.Type != 0 {
		return sa.conn.LocalID
	}
	a := addrOf(sa.local)
	if a.Is4() {
		v := a.As4()
		return wire.ID{Type: wire.ID_IPV4_ADDR, Data: v[:]}
	}
	v := a.As16()
	return wire.ID{Type: wire.ID_IPV6_ADDR, Data: v[:]}
}

// hasOtherSA reports whether another established IKE SA of sa's connection
// exists (sa itself is not established yet when this is asked).
func (e *Engine) hasOtherSA(sa *SA) bool { return sa.conn.active.Load() > 0 }

// HasSA reports whether an established IKE SA of the named connection exists.
func (e *Engine) HasSA(conn string) bool {
	c := e.conns[conn]
	return c != nil && c.active.Load() > 0
}

// dnAttrs names the attribute types operators see in DNs.
var dnAttrs = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
	"2.5.4.11": "OU", "2.5.4.5": "serialNumber", "1.2.840.113549.1.9.1": "E",
}

// dnString prints a DER DN in its encoded order ("C=CH, O=hike, CN=gw"),
// the way strongSwan and most VPN configurations write it.
func dnString(der []byte) (string, bool) {
	var dn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &dn); err != nil || len(rest) != 0 {
		return "", false
	}
	var b strings.Builder
	for _, rdn := range dn {
		for _, atv := range rdn {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			name, ok := dnAttrs[atv.Type.String()]
			if !ok {
				name = atv.Type.String()
			}
			fmt.Fprintf(&b, "%s=%v", name, atv.Value)
		}
	}
	return b.String(), true
}
