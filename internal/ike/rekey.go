package ike

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/wire"
)

// CREATE_CHILD_SA (RFC 7296 §1.3): a new Child SA, a Child SA rekey
// (REKEY_SA notify), or an IKE SA rekey (an SA payload for protocol IKE).

// respondCreateChild answers a CREATE_CHILD_SA request.
func (e *Engine) respondCreateChild(sa *SA, in *inbound, w *wire.Builder) (postAction, error) {
	if sa.state == StateDeleting {
		// RFC 7296 §2.25: nothing new on an IKE SA being closed.
		w.AddNotify(wire.Notify{Type: wire.TEMPORARY_FAILURE})
		return postNone, nil
	}
	if sp, ok := in.find(wire.PayloadSA); ok {
		var props [4]wire.Proposal
		ps, err := wire.ParseSA(props[:0], sp.Body)
		if err != nil {
			return postNone, err
		}
		if len(ps) > 0 && ps[0].Protocol == wire.ProtoIKE {
			return e.respondIKERekey(sa, in, w)
		}
	}
	req, err := parseChildRequest(in.payloads)
	if err != nil {
		if errors.Is(err, errNoChild) {
			return postNone, &wire.Error{Notify: wire.INVALID_SYNTAX, Reason: "CREATE_CHILD_SA without SA or TS"}
		}
		return postNone, err
	}
	if req.nonce == nil {
		return postNone, &wire.Error{Notify: wire.INVALID_SYNTAX, Reason: "CREATE_CHILD_SA without nonce"}
	}
	var old *ChildSA
	if req.rekey {
		if old = sa.childByOutSPI(req.rekeySPI); old == nil {
			// RFC 7296 §2.25: the SA vanished (we deleted it meanwhile).
			w.AddNotify(wire.Notify{Type: wire.CHILD_SA_NOT_FOUND})
			return postNone, nil
		}
		if old.state == childDeleting {
			w.AddNotify(wire.Notify{Type: wire.TEMPORARY_FAILURE})
			return postNone, nil
		}
	}
	c, prop, err := e.respondChild(sa, &req)
	if err == nil && old != nil {
		c.cfg, c.reqID = old.cfg, old.reqID
	}
	var gir, ourKE []byte
	var group uint16
	if err == nil && req.ke != nil {
		group = req.ke.Group
		gir, ourKE, err = dhRespond(req.ke)
	}
	nr := make([]byte, nonceLen)
	rand.Read(nr)
	if err == nil {
		err = e.keyChild(sa, c, gir, req.nonce, nr, false)
		clear(gir)
	}
	var f *childFailure
	switch {
	case err == nil:
	case errors.As(err, &f):
		w.AddNotify(wire.Notify{Type: f.Notify})
		return postNone, nil
	default:
		e.log.Warn("CREATE_CHILD_SA failed", "sa", sa.logID(), "err", err)
		w.AddNotify(wire.Notify{Type: wire.NO_PROPOSAL_CHOSEN})
		return postNone, nil
	}
	sa.children = append(sa.children, c)
	w.AddSA([]wire.Proposal{prop})
	w.AddNonce(nr)
	if ourKE != nil {
		w.AddKE(wire.KE{Group: group, Data: ourKE})
	}
	w.AddTS(wire.PayloadTSi, c.remoteTS)
	w.AddTS(wire.PayloadTSr, c.localTS)
	if old != nil {
		// The initiator of the rekey deletes the old SA (RFC 7296 §2.8);
		// until then both carry traffic. If we are rekeying it ourselves,
		// remember what this exchange created: when our own response
		// arrives, the nonces decide which of the two new SAs survives
		// (§2.8.1).
		if old.ourRekey {
			old.collision = &rekeyCollision{ni: bytes.Clone(req.nonce), nr: nr, child: c}
		}
		old.state = childRekeying
		e.log.Info("Child SA rekeyed by peer", "sa", sa.logID(), "child", c.cfgName(),
			"old_spi_in", hex32(old.spiIn), "spi_in", hex32(c.spiIn), "spi_out", hex32(c.spiOut))
	} else {
		e.log.Info("Child SA established", "sa", sa.logID(), "child", c.cfgName(),
			"spi_in", hex32(c.spiIn), "spi_out", hex32(c.spiOut))
	}
	return postNone, nil
}

// dhRespond runs the responder's half of a PFS or IKE rekey exchange.
func dhRespond(ke *wire.KE) (gir, public []byte, err error) {
	g, err := crypto.LookupGroup(ke.Group)
	if err != nil {
		return nil, nil, &childFailure{Notify: wire.NO_PROPOSAL_CHOSEN, Reason: "unsupported DH group"}
	}
	kp, err := g.Generate(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	gir, err = kp.SharedSecret(ke.Data)
	if err != nil {
		return nil, nil, &wire.Error{Notify: wire.INVALID_SYNTAX, Payload: wire.PayloadKE, Reason: "bad public value"}
	}
	return gir, kp.Public(), nil
}

// childRekeyExchange rekeys one Child SA (RFC 7296 §2.8): create the new
// pair with REKEY_SA naming the old one, then delete the old one.
type childRekeyExchange struct {
	old    *ChildSA
	new    *ChildSA
	offers []wire.Proposal
	ni, nr []byte
}

func (*childRekeyExchange) kind() wire.ExchangeType { return wire.CREATE_CHILD_SA }

func (x *childRekeyExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	if sa.state != StateEstablished || x.old.state != childInstalled || sa.childByInSPI(x.old.spiIn) == nil {
		return errNoSuchChild
	}
	x.old.state = childRekeying
	x.old.ourRekey = true
	x.new = &ChildSA{cfg: x.old.cfg, reqID: x.old.reqID, spiIn: e.allocChildSPI()}
	x.offers = withSPI(x.old.cfg.ESPProposals, x.new.spiIn)
	x.ni = make([]byte, nonceLen)
	rand.Read(x.ni)
	w.AddRekeySA(wire.ProtoESP, x.old.spiIn)
	w.AddSA(x.offers)
	w.AddNonce(x.ni)
	w.AddTS(wire.PayloadTSi, x.old.localTS)
	w.AddTS(wire.PayloadTSr, x.old.remoteTS)
	return nil
}

func (x *childRekeyExchange) process(e *Engine, sa *SA, in *inbound) error {
	err := x.finish(e, sa, in)
	x.old.ourRekey = false
	if err != nil {
		releaseChildSPI(x.new.spiIn)
		if x.old.state == childRekeying && x.old.collision == nil {
			x.old.state = childInstalled
			x.old.rekeyAt = e.now().Add(e.cfg.RetransmitTimeout * 30)
		}
		x.old.collision = nil
		return err
	}
	if col := x.old.collision; col != nil {
		// Simultaneous rekey (RFC 7296 §2.8.1): the lowest of the four
		// nonces marks the redundant SA, which its creator deletes; the
		// initiator of the surviving SA deletes the old one.
		x.old.collision = nil
		if bytes.Compare(bytesMin(x.ni, x.nr), bytesMin(col.ni, col.nr)) < 0 {
			e.log.Info("simultaneous Child SA rekey: ours is redundant", "sa", sa.logID(), "spi_in", hex32(x.new.spiIn))
			e.enqueue(sa, &deleteExchange{children: []*ChildSA{x.new}})
			return nil
		}
		e.log.Info("simultaneous Child SA rekey: ours survives", "sa", sa.logID(), "spi_in", hex32(x.new.spiIn))
	}
	e.enqueue(sa, &deleteExchange{children: []*ChildSA{x.old}})
	return nil
}

// rekeyCollision records the peer's rekey of a Child SA we are rekeying
// too: its nonces and the Child SA our answer created.
type rekeyCollision struct {
	ni, nr []byte
	child  *ChildSA
}

// bytesMin returns the lower of two nonces, octet by octet, a prefix being
// lower than what it prefixes (RFC 7296 §2.8.1).
func bytesMin(a, b []byte) []byte {
	if bytes.Compare(a, b) <= 0 {
		return a
	}
	return b
}

func (x *childRekeyExchange) finish(e *Engine, sa *SA, in *inbound) error {
	nr, err := e.completeChild(sa, x.new, x.offers, x.ni, in)
	if err != nil {
		return err
	}
	x.nr = nr
	e.log.Info("Child SA rekeyed", "sa", sa.logID(), "child", x.new.cfgName(),
		"old_spi_in", hex32(x.old.spiIn), "spi_in", hex32(x.new.spiIn), "spi_out", hex32(x.new.spiOut))
	return nil
}

// completeChild finishes a Child SA we requested from the CREATE_CHILD_SA
// response: the responder's choice must be one we offered, its selectors a
// subset of ours (RFC 7296 §2.7, §2.9). It returns the responder's nonce.
func (e *Engine) completeChild(sa *SA, c *ChildSA, offers []wire.Proposal, ni []byte, in *inbound) ([]byte, error) {
	if t, ok := in.errorNotify(); ok {
		return nil, fmt.Errorf("peer refused the Child SA: %v", t)
	}
	resp, err := parseChildRequest(in.payloads)
	if err != nil {
		return nil, err
	}
	choice, spi, err := checkESP(offers, resp.proposals, wire.DH_NONE)
	if err != nil {
		return nil, err
	}
	if resp.nonce == nil {
		return nil, errors.New("response without nonce")
	}
	c.spiOut = spi
	c.setAlgorithms(choice)
	c.localTS, c.remoteTS = resp.tsi, resp.tsr
	if err := e.keyChild(sa, c, nil, ni, resp.nonce, true); err != nil {
		return nil, err
	}
	sa.children = append(sa.children, c)
	return bytes.Clone(resp.nonce), nil
}

// createChildExchange creates an additional Child SA (RFC 7296 §1.3.1), for
// connections with more than one child: the first comes with IKE_AUTH.
type createChildExchange struct {
	cfg      *ChildConfig
	child    *ChildSA
	offers   []wire.Proposal
	ni       []byte
	tsi, tsr []wire.TrafficSelector
}

func (*createChildExchange) kind() wire.ExchangeType { return wire.CREATE_CHILD_SA }

func (x *createChildExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	x.child = &ChildSA{cfg: x.cfg, spiIn: e.allocChildSPI()}
	x.offers = withSPI(x.cfg.ESPProposals, x.child.spiIn)
	x.ni = make([]byte, nonceLen)
	rand.Read(x.ni)
	x.tsi, x.tsr = e.localTS(sa, x.cfg), e.remoteTS(sa, x.cfg)
	w.AddSA(x.offers)
	w.AddNonce(x.ni)
	w.AddTS(wire.PayloadTSi, x.tsi)
	w.AddTS(wire.PayloadTSr, x.tsr)
	return nil
}

func (x *createChildExchange) process(e *Engine, sa *SA, in *inbound) error {
	if _, err := e.completeChild(sa, x.child, x.offers, x.ni, in); err != nil {
		x.abandon(err)
		return err
	}
	if !subset(x.child.localTS, x.tsi) || !subset(x.child.remoteTS, x.tsr) {
		e.deleteChild(sa, x.child)
		return errors.New("responder widened the traffic selectors")
	}
	e.log.Info("Child SA established", "sa", sa.logID(), "child", x.cfg.Name,
		"spi_in", hex32(x.child.spiIn), "spi_out", hex32(x.child.spiOut))
	return nil
}

func (x *createChildExchange) abandon(error) {
	if x.child != nil && !x.child.installed {
		releaseChildSPI(x.child.spiIn)
	}
}

func (x *createChildExchange) rerun() exchange {
	x.abandon(nil)
	return &createChildExchange{cfg: x.cfg}
}

func (x *childRekeyExchange) abandon(error) {
	if x.new != nil {
		releaseChildSPI(x.new.spiIn)
	}
}

// ikeRekeyExchange rekeys the IKE SA (RFC 7296 §2.18): a new IKE SA with
// fresh SPIs, keys derived from the old SK_d, the Child SAs moved over, and
// the old SA deleted.
type ikeRekeyExchange struct {
	table  *Table
	next   *SA
	dh     crypto.KeyPair
	ni     []byte
	offers []wire.Proposal
}

func (*ikeRekeyExchange) kind() wire.ExchangeType { return wire.CREATE_CHILD_SA }

func (x *ikeRekeyExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	if sa.state != StateEstablished {
		return errSADeleted
	}
	g, err := crypto.LookupGroup(sa.suite.DH)
	if err != nil {
		return err
	}
	if x.dh, err = g.Generate(rand.Reader); err != nil {
		return err
	}
	x.next = &SA{initiator: true, conn: sa.conn, local: sa.local, remote: sa.remote,
		created: e.now(), state: StateInit, ext: sa.ext, peerID: sa.peerID, vip: sa.vip}
	spi := e.table.Insert(x.next)
	x.table = e.table
	x.offers = make([]wire.Proposal, len(sa.conn.IKEProposals))
	spib := binary.BigEndian.AppendUint64(nil, spi)
	for i, p := range sa.conn.IKEProposals {
		p.SPI = spib
		p.Num = uint8(i + 1)
		x.offers[i] = p
	}
	x.ni = make([]byte, nonceLen)
	rand.Read(x.ni)
	w.AddSA(x.offers)
	w.AddNonce(x.ni)
	w.AddKE(wire.KE{Group: sa.suite.DH, Data: x.dh.Public()})
	return nil
}

func (x *ikeRekeyExchange) process(e *Engine, sa *SA, in *inbound) error {
	if err := x.finish(e, sa, in); err != nil {
		x.abandon(err)
		if col := sa.ikeCollision; col != nil {
			// Ours failed but the peer's crossing rekey succeeded: its new
			// SA takes over, and the peer deletes the old one.
			sa.ikeCollision = nil
			col.next.mu.Lock()
			e.moveChildren(sa, col.next)
			col.next.mu.Unlock()
			sa.state = StateDeleting
			return err
		}
		if d := sa.conn.RekeyTime; d > 0 {
			sa.rekeyAt = e.now().Add(d / 10)
		}
		return err
	}
	return nil
}

func (x *ikeRekeyExchange) finish(e *Engine, sa *SA, in *inbound) error {
	if t, ok := in.errorNotify(); ok {
		return fmt.Errorf("peer refused IKE SA rekey: %v", t)
	}
	r, err := parseIKERekey(in.payloads)
	if err != nil {
		return err
	}
	ps, ke, nr := r.proposals, &r.ke, r.nonce
	if len(ps) != 1 || len(ps[0].SPI) != 8 {
		return errors.New("IKE rekey response must choose one proposal with an 8-octet SPI")
	}
	choice, err := crypto.CheckChoice(x.offers, ps, wire.ProtoIKE, sa.suite.DH)
	if err != nil {
		return err
	}
	gir, err := x.dh.SharedSecret(ke.Data)
	if err != nil {
		return err
	}
	n := x.next
	// n is in the table already (its SPI had to be reserved), so others
	// may look at it: change it only under its lock.
	n.mu.Lock()
	n.spiR = binary.BigEndian.Uint64(ps[0].SPI)
	n.suite = suiteOf(choice)
	spiI, spiR, suite := n.spiI, n.spiR, n.suite
	n.mu.Unlock()
	keys, err := crypto.RekeyIKEKeys(sa.suite.PRF, sa.keys.D, suite.PRF, suite.Encr, suite.Integ,
		gir, x.ni, nr, spiI, spiR)
	clear(gir)
	if err != nil {
		return err
	}
	col := sa.ikeCollision
	sa.ikeCollision = nil
	if col != nil && bytes.Compare(bytesMin(x.ni, nr), bytesMin(col.ni, col.nr)) < 0 {
		// Simultaneous rekey, and the lowest nonce is in our exchange:
		// our new SA is the redundant one and we delete it; the peer's
		// new SA takes the Child SAs, and the peer deletes the old one.
		e.log.Info("simultaneous IKE SA rekey: ours is redundant", "sa", sa.logID(), "new", n.logID())
		e.activateRekeyed(sa, n, keys, false)
		col.next.mu.Lock()
		e.moveChildren(sa, col.next)
		col.next.mu.Unlock()
		n.mu.Lock()
		e.enqueue(n, &deleteExchange{})
		n.mu.Unlock()
		sa.state = StateDeleting
		return nil
	}
	if col != nil {
		e.log.Info("simultaneous IKE SA rekey: ours survives", "sa", sa.logID(), "new", n.logID())
	}
	e.activateRekeyed(sa, n, keys, true)
	// Closing from now on: a rekey of it that arrives before our Delete
	// gets TEMPORARY_FAILURE (§2.25).
	sa.state = StateDeleting
	e.enqueue(sa, &deleteExchange{})
	return nil
}

// abandon takes back the SPI of a new SA that never went live.
func (x *ikeRekeyExchange) abandon(error) {
	if x.next != nil {
		x.next.mu.Lock()
		x.next.state = StateDead
		x.next.mu.Unlock()
		x.table.Remove(x.next)
		x.next = nil
	}
}

// respondIKERekey answers an IKE SA rekey request.
func (e *Engine) respondIKERekey(sa *SA, in *inbound, w *wire.Builder) (postAction, error) {
	// RFC 7296 §2.25: an IKE SA being closed, or one whose Child SAs are
	// being created, rekeyed or deleted, is not rekeyed now; the peer
	// retries later. Our own IKE rekey in flight is a simultaneous rekey,
	// answered normally and resolved when our response arrives (§2.8.2).
	_, crossing := sa.outstanding().(*ikeRekeyExchange)
	switch x := sa.outstanding().(type) {
	case *childRekeyExchange, *createChildExchange:
		w.AddNotify(wire.Notify{Type: wire.TEMPORARY_FAILURE})
		return postNone, nil
	case *deleteExchange:
		if x.children != nil {
			w.AddNotify(wire.Notify{Type: wire.TEMPORARY_FAILURE})
			return postNone, nil
		}
	}
	if sa.state == StateDeleting {
		w.AddNotify(wire.Notify{Type: wire.TEMPORARY_FAILURE})
		return postNone, nil
	}
	r, err := parseIKERekey(in.payloads)
	if err != nil {
		return postNone, err
	}
	ps, ke, ni := r.proposals, &r.ke, r.nonce
	choice, err := crypto.Select(ps, sa.conn.IKEProposals, wire.ProtoIKE, ke.Group)
	if err != nil {
		var ne *crypto.NegotiationError
		if errors.As(err, &ne) {
			w.AddNotify(wire.Notify{Type: ne.Notify, Data: ne.NotifyData()})
		} else {
			w.AddNotify(wire.Notify{Type: wire.NO_PROPOSAL_CHOSEN})
		}
		return postNone, nil
	}
	if len(choice.PeerSPI) != 8 {
		return postNone, &wire.Error{Notify: wire.INVALID_SYNTAX, Reason: "IKE proposal without 8-octet SPI"}
	}
	gir, ourKE, err := dhRespond(ke)
	if err != nil {
		return postNone, err
	}
	nr := make([]byte, nonceLen)
	rand.Read(nr)
	n := &SA{initiator: false, conn: sa.conn, local: sa.local, remote: sa.remote, created: e.now(),
		state: StateInit, ext: sa.ext, peerID: sa.peerID, vip: sa.vip,
		spiI:  binary.BigEndian.Uint64(choice.PeerSPI),
		suite: suiteOf(choice)}
	spi := e.table.Insert(n)
	keys, err := crypto.RekeyIKEKeys(sa.suite.PRF, sa.keys.D, n.suite.PRF, n.suite.Encr, n.suite.Integ,
		gir, ni, nr, n.spiI, n.spiR)
	clear(gir)
	if err != nil {
		e.table.Remove(n)
		return postNone, err
	}
	prop := choice.Proposal
	prop.SPI = binary.BigEndian.AppendUint64(nil, spi)
	w.AddSA([]wire.Proposal{prop})
	w.AddNonce(nr)
	w.AddKE(wire.KE{Group: ke.Group, Data: ourKE})
	if crossing {
		// The Child SAs stay where they are until the nonces decide
		// which new SA survives.
		e.activateRekeyed(sa, n, keys, false)
		sa.ikeCollision = &ikeCollision{ni: bytes.Clone(ni), nr: nr, next: n}
		return postNone, nil
	}
	e.activateRekeyed(sa, n, keys, true)
	// The old SA stays until the peer deletes it (RFC 7296 §2.18).
	sa.state = StateDeleting
	return postNone, nil
}

// ikeCollision records the peer's rekey of an IKE SA we are rekeying too
// (RFC 7296 §2.8.2): its nonces and the SA our answer created.
type ikeCollision struct {
	ni, nr []byte
	next   *SA
}

// outstanding returns the exchange of our request in flight, if any.
func (sa *SA) outstanding() exchange {
	if sa.out == nil {
		return nil
	}
	return sa.out.x
}

// activateRekeyed makes n, an SA that replaces old, live: keys and timers,
// and with adopt the Child SAs (still installed; only their owner changes).
// RFC 6311 capabilities are inherited (the RFC is silent; strongSwan does
// the same) and Message IDs start again at 0 (RFC 7296 §2.18).
func (e *Engine) activateRekeyed(old, n *SA, keys *crypto.IKEKeys, adopt bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.keys = keys
	sk, err := crypto.NewSK(n.suite.Encr, n.suite.Integ, keys, n.initiator)
	if err != nil {
		e.log.Error("rekeyed SA unusable", "err", err)
		return
	}
	n.sk = sk
	if adopt {
		e.moveChildren(old, n)
	}
	e.halfOpen.Add(1) // established() counts it down again
	e.established(n)
	e.log.Info("IKE SA rekeyed", "old", old.logID(), "new", n.logID())
	e.rearm(n)
}

// moveChildren hands old's Child SAs and virtual IP to n; both are locked.
func (e *Engine) moveChildren(old, n *SA) {
	n.children, old.children = append(n.children, old.children...), nil
	if old.vip.IsValid() {
		n.vip, old.vip = old.vip, netip.Addr{}
	}
	e.touch(old)
	e.touch(n)
}

// ikeRekey is what both messages of an IKE SA rekey carry (RFC 7296 §1.3.2).
type ikeRekey struct {
	proposals []wire.Proposal
	ke        wire.KE
	nonce     []byte
}

func parseIKERekey(payloads []wire.Payload) (ikeRekey, error) {
	var r ikeRekey
	var haveKE bool
	for _, p := range payloads {
		var err error
		switch p.Type {
		case wire.PayloadSA:
			r.proposals, err = wire.ParseSA(nil, p.Body)
		case wire.PayloadKE:
			r.ke, err = wire.ParseKE(p.Body)
			haveKE = true
		case wire.PayloadNonce:
			r.nonce, err = wire.ParseNonce(p.Body)
		}
		if err != nil {
			return r, err
		}
	}
	if !haveKE || r.nonce == nil || r.proposals == nil {
		return r, &wire.Error{Notify: wire.INVALID_SYNTAX, Reason: "IKE rekey without SA, KE or nonce"}
	}
	return r, nil
}
