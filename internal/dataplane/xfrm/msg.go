package xfrm

// Encoders and decoders for the XFRM netlink messages this backend sends
// and receives. Layouts follow include/uapi/linux/xfrm.h; offsets are
// spelled out because the kernel ABI is fixed and a mistake here shows up
// only as EINVAL or, worse, as a silently different SA. Netlink integers
// are in host byte order; SPIs and ports are in network byte order.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

var ne = binary.NativeEndian

// Message types (enum in xfrm.h, XFRM_MSG_BASE = 0x10).
const (
	msgNewSA     = 0x10
	msgDelSA     = 0x11
	msgGetSA     = 0x12
	msgDelPolicy = 0x14
	msgExpire    = 0x18
	msgUpdPolicy = 0x19
	msgUpdSA     = 0x1a
	msgNewAE     = 0x1e
	msgGetAE     = 0x1f
)

// Attribute types (enum xfrm_attr_type_t).
const (
	attrAlgCrypt     = 2
	attrEncap        = 4
	attrTmpl         = 5
	attrLtimeVal     = 9
	attrReplayVal    = 10
	attrAlgAEAD      = 18
	attrAlgAuthTrunc = 20
	attrReplayESNVal = 23
)

// Netlink header flags and message types (linux/netlink.h).
const (
	nlmFRequest = 0x1
	nlmFMulti   = 0x2
	nlmFAck     = 0x4
	nlmFReplace = 0x100
	nlmFExcl    = 0x200
	nlmFCreate  = 0x400
	nlmFCapped  = 0x100 // in NLMSG_ERROR: the request was not echoed
	nlmFAckTLVs = 0x200 // in NLMSG_ERROR: extended ACK attributes follow
	nlmsgError  = 0x2
	nlmsgDone   = 0x3
	nlmsgerrMsg = 1 // NLMSGERR_ATTR_MSG
)

// aevent flags (enum xfrm_ae_ftype_t).
const (
	aeRVal = 2 // replay value
	aeLVal = 4 // lifetime value
)

const (
	afInet      = 2
	afInet6     = 10
	protoESP    = 50
	modeTunnel  = 1
	stateESN    = 0x80 // XFRM_STATE_ESN
	policyIn    = 0
	policyOut   = 1
	policyFwd   = 2
	udpEncapESP = 2 // UDP_ENCAP_ESPINUDP, RFC 3948
	xfrmInf     = ^uint64(0)
)

// Sizes of the fixed structures.
const (
	sizeNlmsghdr      = 16
	sizeUsersaInfo    = 224
	sizeUsersaID      = 24
	sizeAeventID      = 48
	sizeUserExpire    = 232
	sizeUserpolicy    = 168
	sizeUserpolicyID  = 64
	sizeUserTmpl      = 64
	sizeEncapTmpl     = 24
	sizeReplayState   = 12
	sizeReplayESNHead = 24
	sizeLifetimeCur   = 32
	algNameLen        = 64
	// maxBmpLen bounds the ESN bitmap the kernel accepts
	// (XFRMA_REPLAY_ESN_MAX = 4096 octets of bitmap).
	maxBmpLen = 4096 / 4
)

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return afInet
	}
	return afInet6
}

// putAddr writes an xfrm_address_t: IPv4 in the first four octets.
func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b[:4], v[:])
		return
	}
	v := a.As16()
	copy(b[:16], v[:])
}

func getAddr(b []byte, fam uint16) (netip.Addr, bool) {
	switch fam {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4])), true
	case afInet6:
		return netip.AddrFrom16([16]byte(b[:16])), true
	}
	return netip.Addr{}, false
}

// newMsg starts a netlink message with a zeroed body of bodyLen octets.
// The sequence number and port are filled in by the socket.
func newMsg(typ, flags uint16, bodyLen int) []byte {
	b := make([]byte, sizeNlmsghdr+bodyLen, sizeNlmsghdr+bodyLen+256)
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags|nlmFRequest)
	ne.PutUint32(b[0:], uint32(len(b)))
	return b
}

func align4(n int) int { return (n + 3) &^ 3 }

// appendAttr appends a netlink attribute whose payload is n zero octets and
// returns the message and the payload to fill in.
func appendAttr(msg []byte, typ uint16, n int) ([]byte, []byte) {
	off := len(msg)
	total := align4(4 + n)
	msg = append(msg, make([]byte, total)...)
	ne.PutUint16(msg[off:], uint16(4+n))
	ne.PutUint16(msg[off+2:], typ)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	return msg, msg[off+4 : off+4+n]
}

// putLifetimeCfg writes an xfrm_lifetime_cfg from volume limits; zero
// means no limit. Time limits stay infinite: the daemon owns the clock.
func putLifetimeCfg(b []byte, softBytes, hardBytes, softPackets, hardPackets uint64) {
	lim := func(v uint64) uint64 {
		if v == 0 {
			return xfrmInf
		}
		return v
	}
	ne.PutUint64(b[0:], lim(softBytes))
	ne.PutUint64(b[8:], lim(hardBytes))
	ne.PutUint64(b[16:], lim(softPackets))
	ne.PutUint64(b[24:], lim(hardPackets))
	// soft/hard add and use expiry seconds: 0 = none in the kernel
}

// kernelAlgs maps the negotiated transform to the kernel's crypto names.
type kernelAlgs struct {
	aead, crypt, auth  string
	icvBits, truncBits int
}

func algNames(a dp.Algorithm) (kernelAlgs, error) {
	var k kernelAlgs
	switch a.Encr {
	case dp.EncrAESGCM16:
		k.aead, k.icvBits = "rfc4106(gcm(aes))", 128
	case dp.EncrChaCha20Poly1305:
		k.aead, k.icvBits = "rfc7539esp(chacha20,poly1305)", 128
	case dp.EncrAESCBC:
		k.crypt = "cbc(aes)"
	default:
		return k, fmt.Errorf("unsupported ENCR transform %d", a.Encr)
	}
	if k.aead != "" {
		return k, nil
	}
	// Truncation lengths: RFC 2404 (96 bits), RFC 4868 §2.3 (half the hash).
	switch a.Integ {
	case dp.IntegHMACSHA1_96:
		k.auth, k.truncBits = "hmac(sha1)", 96
	case dp.IntegHMACSHA2_256_128:
		k.auth, k.truncBits = "hmac(sha256)", 128
	case dp.IntegHMACSHA2_384_192:
		k.auth, k.truncBits = "hmac(sha384)", 192
	case dp.IntegHMACSHA2_512_256:
		k.auth, k.truncBits = "hmac(sha512)", 256
	default:
		return k, fmt.Errorf("unsupported INTEG transform %d", a.Integ)
	}
	return k, nil
}

// saParams is everything newSAMsg encodes, flattened so that the encoder
// does not depend on the public types.
type saParams struct {
	src, dst     netip.Addr
	spi, reqid   uint32
	alg          dp.Algorithm
	encrKey      []byte
	integKey     []byte
	esn          bool
	window       uint32
	encap        bool
	sport, dport uint16
	softB, hardB uint64
	softP, hardP uint64
	update       bool
}

// newSAMsg builds XFRM_MSG_NEWSA (or UPDSA) for a tunnel-mode ESP SA.
//
// Replay state: the legacy xfrm_replay_state holds a 32-packet bitmap and
// the kernel silently caps larger windows. So ESN SAs and any window above
// 32 carry XFRMA_REPLAY_ESN_VAL (the kernel's "bmp" mode without the ESN
// flag) and leave replay_window in xfrm_usersa_info at zero, as the kernel
// requires when that attribute is present.
func newSAMsg(p *saParams) ([]byte, error) {
	k, err := algNames(p.alg)
	if err != nil {
		return nil, err
	}
	typ, flags := uint16(msgNewSA), uint16(nlmFAck|nlmFCreate|nlmFExcl)
	if p.update {
		typ, flags = msgUpdSA, nlmFAck
	}
	m := newMsg(typ, flags, sizeUsersaInfo)
	b := m[sizeNlmsghdr:]
	fam := family(p.dst)
	ne.PutUint16(b[40:], fam) // sel.family; the rest of the selector is "any"
	putAddr(b[56:], p.dst)    // id.daddr
	binary.BigEndian.PutUint32(b[72:], p.spi)
	b[76] = protoESP
	putAddr(b[80:], p.src)
	putLifetimeCfg(b[96:], p.softB, p.hardB, p.softP, p.hardP)
	ne.PutUint32(b[208:], p.reqid)
	ne.PutUint16(b[212:], fam)
	b[214] = modeTunnel
	useESNAttr := p.esn || p.window > 32
	window := p.window
	if p.esn && window == 0 {
		// The kernel refuses ESN without a window; an outbound SA never
		// checks it, and an inbound ESN SA cannot run without one.
		window = 1
	}
	if !useESNAttr {
		b[215] = byte(window)
	}
	if p.esn {
		b[216] = stateESN
	}

	if k.aead != "" {
		var a []byte
		m, a = appendAttr(m, attrAlgAEAD, algNameLen+8+len(p.encrKey))
		copy(a, k.aead)
		ne.PutUint32(a[64:], uint32(len(p.encrKey)*8))
		ne.PutUint32(a[68:], uint32(k.icvBits))
		copy(a[72:], p.encrKey)
	} else {
		var a []byte
		m, a = appendAttr(m, attrAlgCrypt, algNameLen+4+len(p.encrKey))
		copy(a, k.crypt)
		ne.PutUint32(a[64:], uint32(len(p.encrKey)*8))
		copy(a[68:], p.encrKey)
		m, a = appendAttr(m, attrAlgAuthTrunc, algNameLen+8+len(p.integKey))
		copy(a, k.auth)
		ne.PutUint32(a[64:], uint32(len(p.integKey)*8))
		ne.PutUint32(a[68:], uint32(k.truncBits))
		copy(a[72:], p.integKey)
	}
	if p.encap {
		var a []byte
		m, a = appendAttr(m, attrEncap, sizeEncapTmpl)
		ne.PutUint16(a[0:], udpEncapESP)
		binary.BigEndian.PutUint16(a[2:], p.sport)
		binary.BigEndian.PutUint16(a[4:], p.dport)
		// encap_oa (original address, for transport-mode checksum fixup)
		// stays zero: tunnel mode carries the inner header intact.
	}
	if useESNAttr {
		bmpLen := (window + 31) / 32
		if bmpLen > maxBmpLen {
			return nil, fmt.Errorf("replay window %d exceeds the kernel's %d packets", window, maxBmpLen*32)
		}
		var a []byte
		m, a = appendAttr(m, attrReplayESNVal, sizeReplayESNHead+4*int(bmpLen))
		ne.PutUint32(a[0:], bmpLen)
		ne.PutUint32(a[20:], window)
	}
	return m, nil
}

// putUsersaID writes an xfrm_usersa_id.
func putUsersaID(b []byte, dst netip.Addr, spi uint32) {
	putAddr(b[0:], dst)
	binary.BigEndian.PutUint32(b[16:], spi)
	ne.PutUint16(b[20:], family(dst))
	b[22] = protoESP
}

// delSAMsg builds XFRM_MSG_DELSA.
func delSAMsg(dst netip.Addr, spi uint32) []byte {
	m := newMsg(msgDelSA, nlmFAck, sizeUsersaID)
	putUsersaID(m[sizeNlmsghdr:], dst, spi)
	return m
}

// getSAMsg builds XFRM_MSG_GETSA; the answer is an XFRM_MSG_NEWSA.
func getSAMsg(dst netip.Addr, spi uint32) []byte {
	m := newMsg(msgGetSA, 0, sizeUsersaID)
	putUsersaID(m[sizeNlmsghdr:], dst, spi)
	return m
}

// saFlags is what this backend reads back from an installed SA.
type saFlags struct {
	esn          bool
	legacyWindow uint8 // replay_window of xfrm_usersa_info; 0 when the SA uses the ESN layout
}

// parseUsersaInfo decodes the parts of an xfrm_usersa_info (the body of
// XFRM_MSG_NEWSA) that the replay code needs.
func parseUsersaInfo(body []byte) (saFlags, error) {
	if len(body) < sizeUsersaInfo {
		return saFlags{}, errShort
	}
	return saFlags{esn: body[216]&stateESN != 0, legacyWindow: body[215]}, nil
}

// parseSAKeys returns the keys of an XFRM_MSG_NEWSA body: the AEAD or
// cipher key (with its salt, as installed) and the integrity key, if any.
// The slices alias body.
func parseSAKeys(body []byte) (encr, integ []byte, err error) {
	if len(body) < sizeUsersaInfo {
		return nil, nil, errShort
	}
	bad := false
	key := func(data []byte, off int) []byte {
		if len(data) < off {
			bad = true
			return nil
		}
		n := int(ne.Uint32(data[algNameLen:])+7) / 8
		if n > len(data)-off {
			bad = true
			return nil
		}
		return data[off : off+n]
	}
	err = attrs(body[sizeUsersaInfo:], func(typ uint16, data []byte) {
		switch typ {
		case attrAlgAEAD:
			encr = key(data, algNameLen+8)
		case attrAlgCrypt:
			encr = key(data, algNameLen+4)
		case attrAlgAuthTrunc:
			integ = key(data, algNameLen+8)
		}
	})
	if err == nil && bad {
		err = errShort
	}
	return encr, integ, err
}

// getAEMsg builds XFRM_MSG_GETAE, which reads an SA's replay state and
// lifetime counters (Documentation/networking/xfrm_sync.rst).
func getAEMsg(src, dst netip.Addr, spi uint32) []byte {
	m := newMsg(msgGetAE, 0, sizeAeventID)
	b := m[sizeNlmsghdr:]
	putUsersaID(b, dst, spi)
	putAddr(b[24:], src)
	ne.PutUint32(b[40:], aeRVal|aeLVal)
	return m
}

// replayState is the kernel's view of an SA's sequence numbers, in
// whichever of the two layouts the SA uses.
type replayState struct {
	esnLayout bool // XFRMA_REPLAY_ESN_VAL (ESN or bmp mode) rather than XFRMA_REPLAY_VAL
	oseq      uint32
	seq       uint32
	oseqHi    uint32
	seqHi     uint32
	window    uint32   // esnLayout only; legacy windows live in the SA
	bmp       []uint32 // legacy: one word
}

// aevent is a parsed XFRM_MSG_NEWAE (the answer to GETAE).
type aevent struct {
	replay  replayState
	bytes   uint64
	packets uint64
}

// newAEMsg builds XFRM_MSG_NEWAE that overwrites an SA's replay state. It
// must carry NLM_F_REPLACE or the kernel rejects it, and the ESN layout
// must keep the SA's bitmap length.
func newAEMsg(src, dst netip.Addr, spi uint32, r *replayState) []byte {
	m := newMsg(msgNewAE, nlmFAck|nlmFReplace, sizeAeventID)
	b := m[sizeNlmsghdr:]
	putUsersaID(b, dst, spi)
	putAddr(b[24:], src)
	ne.PutUint32(b[40:], aeRVal)
	var a []byte
	if r.esnLayout {
		m, a = appendAttr(m, attrReplayESNVal, sizeReplayESNHead+4*len(r.bmp))
		ne.PutUint32(a[0:], uint32(len(r.bmp)))
		ne.PutUint32(a[4:], r.oseq)
		ne.PutUint32(a[8:], r.seq)
		ne.PutUint32(a[12:], r.oseqHi)
		ne.PutUint32(a[16:], r.seqHi)
		ne.PutUint32(a[20:], r.window)
		for i, w := range r.bmp {
			ne.PutUint32(a[24+4*i:], w)
		}
		return m
	}
	m, a = appendAttr(m, attrReplayVal, sizeReplayState)
	ne.PutUint32(a[0:], r.oseq)
	ne.PutUint32(a[4:], r.seq)
	if len(r.bmp) > 0 {
		ne.PutUint32(a[8:], r.bmp[0])
	}
	return m
}

var errShort = errors.New("xfrm: truncated netlink message")

// attrs walks netlink attributes, calling fn for each; it stops at the
// first malformed one.
func attrs(b []byte, fn func(typ uint16, data []byte)) error {
	for len(b) >= 4 {
		l := int(ne.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			return errShort
		}
		fn(ne.Uint16(b[2:])&0x3fff, b[4:l]) // strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
		if align4(l) >= len(b) {
			return nil
		}
		b = b[align4(l):]
	}
	return nil
}

// parseAEvent decodes the body (after nlmsghdr) of an XFRM_MSG_NEWAE.
func parseAEvent(body []byte) (aevent, error) {
	var ev aevent
	if len(body) < sizeAeventID {
		return ev, errShort
	}
	var seen bool
	err := attrs(body[sizeAeventID:], func(typ uint16, d []byte) {
		switch typ {
		case attrReplayVal:
			if len(d) >= sizeReplayState {
				ev.replay = replayState{oseq: ne.Uint32(d[0:]), seq: ne.Uint32(d[4:]), bmp: []uint32{ne.Uint32(d[8:])}}
				seen = true
			}
		case attrReplayESNVal:
			if len(d) < sizeReplayESNHead {
				return
			}
			n := ne.Uint32(d[0:])
			if n > maxBmpLen || len(d) < sizeReplayESNHead+4*int(n) {
				return
			}
			r := replayState{
				esnLayout: true,
				oseq:      ne.Uint32(d[4:]), seq: ne.Uint32(d[8:]),
				oseqHi: ne.Uint32(d[12:]), seqHi: ne.Uint32(d[16:]),
				window: ne.Uint32(d[20:]),
				bmp:    make([]uint32, n),
			}
			for i := range r.bmp {
				r.bmp[i] = ne.Uint32(d[24+4*i:])
			}
			ev.replay, seen = r, true
		case attrLtimeVal:
			if len(d) >= sizeLifetimeCur {
				ev.bytes, ev.packets = ne.Uint64(d[0:]), ne.Uint64(d[8:])
			}
		}
	})
	if err != nil {
		return ev, err
	}
	if !seen {
		return ev, errors.New("xfrm: aevent without replay state")
	}
	return ev, nil
}

// expire is a parsed XFRM_MSG_EXPIRE.
type expire struct {
	src, dst netip.Addr
	spi      uint32
	reqid    uint32
	hard     bool
}

// parseExpire decodes the body of an XFRM_MSG_EXPIRE (struct
// xfrm_user_expire: the SA's xfrm_usersa_info and a hard flag).
func parseExpire(body []byte) (expire, error) {
	if len(body) < sizeUserExpire {
		return expire{}, errShort
	}
	fam := ne.Uint16(body[212:])
	dst, ok1 := getAddr(body[56:], fam)
	src, ok2 := getAddr(body[80:], fam)
	if !ok1 || !ok2 {
		return expire{}, fmt.Errorf("xfrm: expire for unknown address family %d", fam)
	}
	return expire{
		src: src, dst: dst,
		spi:   binary.BigEndian.Uint32(body[72:]),
		reqid: ne.Uint32(body[208:]),
		hard:  body[224] != 0,
	}, nil
}

// selector is an xfrm_selector: one source/destination prefix pair with
// optional protocol and masked ports.
type selector struct {
	src, dst         netip.Prefix
	proto            uint8
	sport, sportMask uint16
	dport, dportMask uint16
}

func putSelector(b []byte, s *selector) {
	putAddr(b[0:], s.dst.Addr())
	putAddr(b[16:], s.src.Addr())
	binary.BigEndian.PutUint16(b[32:], s.dport)
	binary.BigEndian.PutUint16(b[34:], s.dportMask)
	binary.BigEndian.PutUint16(b[36:], s.sport)
	binary.BigEndian.PutUint16(b[38:], s.sportMask)
	ne.PutUint16(b[40:], family(s.dst.Addr()))
	b[42] = byte(s.dst.Bits())
	b[43] = byte(s.src.Bits())
	b[44] = s.proto
}

// policyParams describes one XFRM policy with a single ESP tunnel template.
type policyParams struct {
	sel      selector
	dir      uint8
	priority uint32
	tmplSrc  netip.Addr
	tmplDst  netip.Addr
	reqid    uint32
	// bypass makes a policy without a template: matching traffic
	// passes in the clear whatever the IPsec policies below it say.
	bypass bool
}

// updPolicyMsg builds XFRM_MSG_UPDPOLICY, which adds a policy or replaces
// the one with the same selector and direction.
func updPolicyMsg(p *policyParams) []byte {
	m := newMsg(msgUpdPolicy, nlmFAck, sizeUserpolicy)
	b := m[sizeNlmsghdr:]
	putSelector(b, &p.sel)
	putLifetimeCfg(b[56:], 0, 0, 0, 0)
	ne.PutUint32(b[152:], p.priority)
	b[160] = p.dir
	// action 0 = XFRM_POLICY_ALLOW, share 0 = XFRM_SHARE_ANY
	if p.bypass {
		return m
	}
	var t []byte
	m, t = appendAttr(m, attrTmpl, sizeUserTmpl)
	putAddr(t[0:], p.tmplDst)
	t[20] = protoESP
	ne.PutUint16(t[24:], family(p.tmplDst))
	putAddr(t[28:], p.tmplSrc)
	ne.PutUint32(t[44:], p.reqid)
	t[48] = modeTunnel
	ne.PutUint32(t[52:], ^uint32(0)) // aalgos: any
	ne.PutUint32(t[56:], ^uint32(0)) // ealgos: any
	ne.PutUint32(t[60:], ^uint32(0)) // calgos: any
	return m
}

// delPolicyMsg builds XFRM_MSG_DELPOLICY by selector and direction.
func delPolicyMsg(sel *selector, dir uint8) []byte {
	m := newMsg(msgDelPolicy, nlmFAck, sizeUserpolicyID)
	b := m[sizeNlmsghdr:]
	putSelector(b, sel)
	b[60] = dir
	return m
}

// parseNlmsgs splits a datagram into messages: type, flags, seq and body.
func parseNlmsgs(b []byte, fn func(typ, flags uint16, seq uint32, body []byte) bool) error {
	for len(b) >= sizeNlmsghdr {
		l := int(ne.Uint32(b[0:]))
		if l < sizeNlmsghdr || l > len(b) {
			return errShort
		}
		if !fn(ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:]), b[sizeNlmsghdr:l]) {
			return nil
		}
		if align4(l) >= len(b) {
			return nil
		}
		b = b[align4(l):]
	}
	return nil
}

// parseNlError decodes an NLMSG_ERROR body: the errno (0 for an ACK) and
// the kernel's extended-ACK text, if any.
func parseNlError(flags uint16, body []byte) (errno int32, text string, err error) {
	if len(body) < 4+sizeNlmsghdr {
		return 0, "", errShort
	}
	errno = -int32(ne.Uint32(body[0:]))
	if flags&nlmFAckTLVs == 0 {
		return errno, "", nil
	}
	off := 4 + sizeNlmsghdr
	if flags&nlmFCapped == 0 {
		off = 4 + align4(int(ne.Uint32(body[4:])))
	}
	if off > len(body) {
		return errno, "", errShort
	}
	err = attrs(body[off:], func(typ uint16, d []byte) {
		if typ == nlmsgerrMsg {
			for len(d) > 0 && d[len(d)-1] == 0 {
				d = d[:len(d)-1]
			}
			text = string(d)
		}
	})
	return errno, text, err
}
