package xfrm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// The expected bytes below are typed from the struct layouts in
// include/uapi/linux/xfrm.h and linux/netlink.h (x86-64, little endian),
// not produced by the encoders under test.

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func littleEndian(t *testing.T) {
	t.Helper()
	var b [2]byte
	ne.PutUint16(b[:], 1)
	if b[0] != 1 {
		t.Skip("expected bytes are typed for little-endian hosts")
	}
}

func diffBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at offset %d: got %02x want %02x\ngot  %x\nwant %x", what, i, got[i], want[i], got, want)
		}
	}
	t.Fatalf("%s: length %d, want %d\ngot  %x\nwant %x", what, len(got), len(want), got, want)
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func TestGetAEMsg(t *testing.T) {
	littleEndian(t)
	want := unhex(t, `
		40000000 1f00 0100 00000000 00000000
		c0000202 00000000 00000000 00000000  01020304  0200 32 00
		c0000201 00000000 00000000 00000000
		06000000 00000000`)
	diffBytes(t, "GETAE", getAEMsg(addrA, addrB, 0x01020304), want)
}

func TestGetAEMsgIPv6(t *testing.T) {
	littleEndian(t)
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	want := unhex(t, `
		40000000 1f00 0100 00000000 00000000
		20010db8 00000000 00000000 00000002  cafebabe  0a00 32 00
		20010db8 00000000 00000000 00000001
		06000000 00000000`)
	diffBytes(t, "GETAE v6", getAEMsg(src, dst, 0xcafebabe), want)
}

func TestNewAEMsgESN(t *testing.T) {
	littleEndian(t)
	r := replayState{esnLayout: true, oseq: 0x11, seq: 0x22, oseqHi: 0x33, seqHi: 0x44, window: 64, bmp: []uint32{0xdeadbeef, 0x80000001}}
	// NLM_F_REQUEST|NLM_F_ACK|NLM_F_REPLACE = 0x105; attribute 23 =
	// XFRMA_REPLAY_ESN_VAL holding xfrm_replay_state_esn {bmp_len, oseq, seq,
	// oseq_hi, seq_hi, replay_window, bmp[2]}.
	want := unhex(t, `
		64000000 1e00 0501 00000000 00000000
		c0000202 00000000 00000000 00000000  00000100  0200 32 00
		c0000201 00000000 00000000 00000000
		02000000 00000000
		2400 1700
		02000000 11000000 22000000 33000000 44000000 40000000 efbeadde 01000080`)
	diffBytes(t, "NEWAE esn", newAEMsg(addrA, addrB, 0x100, &r), want)
}

func TestNewAEMsgLegacy(t *testing.T) {
	littleEndian(t)
	r := replayState{oseq: 0x40000000, seq: 7, bmp: []uint32{0x7f}}
	// attribute 10 = XFRMA_REPLAY_VAL holding xfrm_replay_state {oseq, seq, bitmap}.
	want := unhex(t, `
		50000000 1e00 0501 00000000 00000000
		c0000202 00000000 00000000 00000000  00000100  0200 32 00
		c0000201 00000000 00000000 00000000
		02000000 00000000
		1000 0a00
		00000040 07000000 7f000000`)
	diffBytes(t, "NEWAE legacy", newAEMsg(addrA, addrB, 0x100, &r), want)
}

func TestDelAndGetSAMsg(t *testing.T) {
	littleEndian(t)
	body := `c0000202 00000000 00000000 00000000  0000abcd  0200 32 00`
	diffBytes(t, "DELSA", delSAMsg(addrB, 0xabcd), unhex(t, "28000000 1100 0500 00000000 00000000"+body))
	diffBytes(t, "GETSA", getSAMsg(addrB, 0xabcd), unhex(t, "28000000 1200 0100 00000000 00000000"+body))
}

// usersaInfoWant types an xfrm_usersa_info field by field (offsets from
// xfrm.h: sel 0, id 56, saddr 80, lft 96, curlft 160, stats 192, seq 204,
// reqid 208, family 212, mode 214, replay_window 215, flags 216; 224 in all).
func usersaInfoWant(dst, src [4]byte, spi, reqid uint32, window, flags byte, lft [4]uint64) []byte {
	b := make([]byte, 224)
	binary.LittleEndian.PutUint16(b[40:], 2) // sel.family
	copy(b[56:], dst[:])
	binary.BigEndian.PutUint32(b[72:], spi)
	b[76] = 50
	copy(b[80:], src[:])
	for i, v := range lft {
		binary.LittleEndian.PutUint64(b[96+8*i:], v)
	}
	binary.LittleEndian.PutUint32(b[208:], reqid)
	binary.LittleEndian.PutUint16(b[212:], 2)
	b[214] = 1 // XFRM_MODE_TUNNEL
	b[215] = window
	b[216] = flags
	return b
}

func nlattr(typ uint16, payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload)+3)
	binary.LittleEndian.PutUint16(b[0:], uint16(4+len(payload)))
	binary.LittleEndian.PutUint16(b[2:], typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func algo(name string, fields ...uint32) []byte {
	b := make([]byte, 64)
	copy(b, name)
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, f)
	}
	return b
}

func nlmsg(typ, flags uint16, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h[0:], uint32(16+len(body)))
	binary.LittleEndian.PutUint16(h[4:], typ)
	binary.LittleEndian.PutUint16(h[6:], flags)
	return append(h, body...)
}

const inf = ^uint64(0)

func seqKey(n int, start byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = start + byte(i)
	}
	return k
}

func TestNewSAMsgGCMESN(t *testing.T) {
	littleEndian(t)
	key := seqKey(20, 1)
	p := saParams{src: addrA, dst: addrB, spi: 0x1001, reqid: 7, alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128},
		encrKey: key, esn: true, window: 128, softP: 5, hardB: 1 << 20}
	got, err := newSAMsg(&p)
	if err != nil {
		t.Fatal(err)
	}
	// ESN: replay_window 0 in usersa_info, XFRM_STATE_ESN (0x80), and
	// XFRMA_REPLAY_ESN_VAL with bmp_len 4 for a 128-packet window.
	esn := make([]byte, 24+16)
	binary.LittleEndian.PutUint32(esn[0:], 4)
	binary.LittleEndian.PutUint32(esn[20:], 128)
	want := nlmsg(0x10, 0x605,
		usersaInfoWant([4]byte{192, 0, 2, 2}, [4]byte{192, 0, 2, 1}, 0x1001, 7, 0, 0x80, [4]uint64{inf, 1 << 20, 5, inf}),
		nlattr(18, append(algo("rfc4106(gcm(aes))", 160, 128), key...)), // XFRMA_ALG_AEAD, key bits 160, ICV 128
		nlattr(23, esn))
	diffBytes(t, "NEWSA gcm esn", got, want)
}

func TestNewSAMsgCBCEncap(t *testing.T) {
	littleEndian(t)
	ek, ak := seqKey(32, 0x40), seqKey(20, 0x80)
	p := saParams{src: addrA, dst: addrB, spi: 0x2002, reqid: 9,
		alg:     dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 256, Integ: dp.IntegHMACSHA1_96},
		encrKey: ek, integKey: ak, window: 32, encap: true, sport: 4500, dport: 61000, update: true}
	got, err := newSAMsg(&p)
	if err != nil {
		t.Fatal(err)
	}
	// UDPSA is sent without CREATE|EXCL. Window 32 fits the legacy field.
	// XFRMA_ENCAP: xfrm_encap_tmpl {type 2 = UDP_ENCAP_ESPINUDP, sport and
	// dport big endian, pad, encap_oa}.
	encap := unhex(t, "0200 1194 ee48 0000 00000000 00000000 00000000 00000000")
	want := nlmsg(0x1a, 0x5,
		usersaInfoWant([4]byte{192, 0, 2, 2}, [4]byte{192, 0, 2, 1}, 0x2002, 9, 32, 0, [4]uint64{inf, inf, inf, inf}),
		nlattr(2, append(algo("cbc(aes)", 256), ek...)),        // XFRMA_ALG_CRYPT
		nlattr(20, append(algo("hmac(sha1)", 160, 96), ak...)), // XFRMA_ALG_AUTH_TRUNC, RFC 2404: 96-bit ICV
		nlattr(4, encap))
	diffBytes(t, "UPDSA cbc encap", got, want)
}

func TestNewSAMsgAlgorithms(t *testing.T) {
	// Kernel names and truncation: RFC 4868 §2.3 truncates SHA-2 HMACs to
	// half the hash; RFC 7634 uses a 128-bit Poly1305 tag.
	cases := []struct {
		alg        dp.Algorithm
		ekey, akey int
		attr       uint16
		name       string
		lastField  uint32
	}{
		{dp.Algorithm{Encr: dp.EncrChaCha20Poly1305}, 36, 0, 18, "rfc7539esp(chacha20,poly1305)", 128},
		{dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_256_128}, 16, 32, 20, "hmac(sha256)", 128},
		{dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_384_192}, 16, 48, 20, "hmac(sha384)", 192},
		{dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_512_256}, 16, 64, 20, "hmac(sha512)", 256},
	}
	for _, c := range cases {
		p := saParams{src: addrA, dst: addrB, spi: 1, alg: c.alg, encrKey: make([]byte, c.ekey), integKey: make([]byte, c.akey)}
		m, err := newSAMsg(&p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var found bool
		_ = attrs(m[16+224:], func(typ uint16, d []byte) {
			if typ != c.attr {
				return
			}
			found = true
			if name := string(bytes.TrimRight(d[:64], "\x00")); name != c.name {
				t.Errorf("attr %d name %q, want %q", typ, name, c.name)
			}
			if v := ne.Uint32(d[68:]); v != c.lastField {
				t.Errorf("%s: ICV/truncation %d bits, want %d", c.name, v, c.lastField)
			}
			if kb := ne.Uint32(d[64:]); kb != uint32(8*max(c.ekey*boolInt(c.attr == 18), c.akey*boolInt(c.attr == 20))) {
				t.Errorf("%s: key length %d bits", c.name, kb)
			}
		})
		if !found {
			t.Errorf("%s: attribute %d missing", c.name, c.attr)
		}
	}
	if _, err := newSAMsg(&saParams{src: addrA, dst: addrB, alg: dp.Algorithm{Encr: 3}}); err == nil {
		t.Error("3DES accepted")
	}
	if _, err := newSAMsg(&saParams{src: addrA, dst: addrB, alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, window: 1 << 20}); err == nil {
		t.Error("replay window above the kernel's limit accepted")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestNewSAMsgReplayLayouts(t *testing.T) {
	gcm := dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}
	for _, c := range []struct {
		esn          bool
		window       uint32
		legacyWindow byte
		esnAttr      bool
		bmpLen       uint32
		attrWindow   uint32
	}{
		{false, 0, 0, false, 0, 0},
		{false, 32, 32, false, 0, 0},
		{false, 33, 0, true, 2, 33},
		{true, 0, 0, true, 1, 1}, // ESN without a window still needs one
		{true, 64, 0, true, 2, 64},
	} {
		m, err := newSAMsg(&saParams{src: addrA, dst: addrB, spi: 1, alg: gcm, encrKey: make([]byte, 20), esn: c.esn, window: c.window})
		if err != nil {
			t.Fatal(err)
		}
		if got := m[16+215]; got != c.legacyWindow {
			t.Errorf("esn=%v window=%d: usersa replay_window %d, want %d", c.esn, c.window, got, c.legacyWindow)
		}
		var seen bool
		_ = attrs(m[16+224:], func(typ uint16, d []byte) {
			if typ == attrReplayESNVal {
				seen = true
				if ne.Uint32(d[0:]) != c.bmpLen || ne.Uint32(d[20:]) != c.attrWindow || len(d) != 24+4*int(c.bmpLen) {
					t.Errorf("esn=%v window=%d: replay_esn bmp_len %d window %d len %d", c.esn, c.window, ne.Uint32(d[0:]), ne.Uint32(d[20:]), len(d))
				}
			}
		})
		if seen != c.esnAttr {
			t.Errorf("esn=%v window=%d: XFRMA_REPLAY_ESN_VAL present=%v, want %v", c.esn, c.window, seen, c.esnAttr)
		}
	}
}

func TestPolicyMsgs(t *testing.T) {
	littleEndian(t)
	sel := selector{src: netip.MustParsePrefix("10.1.0.0/24"), dst: netip.MustParsePrefix("10.2.0.0/16"), proto: 6,
		sport: 0, sportMask: 0, dport: 443, dportMask: 0xffff}
	got := updPolicyMsg(&policyParams{sel: sel, dir: policyOut, priority: 1000, tmplSrc: addrA, tmplDst: addrB, reqid: 3})
	// xfrm_selector: daddr, saddr, dport/mask, sport/mask (big endian),
	// family, prefixlen_d, prefixlen_s, proto, pad, ifindex, user.
	selWant := unhex(t, `
		0a020000 00000000 00000000 00000000
		0a010000 00000000 00000000 00000000
		01bb ffff 0000 0000  0200 10 18 06 000000  00000000 00000000`)
	lft := make([]byte, 64+32)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(lft[8*i:], inf)
	}
	// priority 1000, index 0, dir 1 (out), action 0 (allow), flags, share, pad
	tail := unhex(t, "e8030000 00000000 01 00 00 00 00000000")
	// xfrm_user_tmpl: id {daddr, spi 0, proto 50}, family, saddr, reqid,
	// mode 1 (tunnel), share, optional, aalgos/ealgos/calgos = any.
	tmpl := unhex(t, `
		c0000202 00000000 00000000 00000000 00000000 32000000
		0200 0000 c0000201 00000000 00000000 00000000
		03000000 01 00 00 00 ffffffff ffffffff ffffffff`)
	want := nlmsg(0x19, 0x5, selWant, lft, tail, nlattr(5, tmpl))
	diffBytes(t, "UPDPOLICY", got, want)

	del := delPolicyMsg(&sel, policyFwd)
	diffBytes(t, "DELPOLICY", del, nlmsg(0x14, 0x5, selWant, unhex(t, "00000000 02 000000")))
}

func TestPolicyExpansion(t *testing.T) {
	p := dp.Policies{ReqID: 4, Local: addrA, Remote: addrB,
		LocalTS:  []dp.TrafficSelector{dp.PrefixSelector(netip.MustParsePrefix("10.1.0.0/24"))},
		RemoteTS: []dp.TrafficSelector{{Start: netip.MustParseAddr("10.2.0.0"), End: netip.MustParseAddr("10.2.0.2"), Proto: 17, StartPort: 53, EndPort: 53}},
	}
	ps, err := policyMsgs(&p)
	if err != nil {
		t.Fatal(err)
	}
	// 10.2.0.0-10.2.0.2 is 10.2.0.0/31 + 10.2.0.2/32: two pairs, three directions each.
	if len(ps) != 6 {
		t.Fatalf("%d policies, want 6", len(ps))
	}
	out, in, fwd := ps[0], ps[1], ps[2]
	if out.dir != policyOut || in.dir != policyIn || fwd.dir != policyFwd {
		t.Fatalf("directions %d %d %d", out.dir, in.dir, fwd.dir)
	}
	if out.sel.src.String() != "10.1.0.0/24" || out.sel.dst.String() != "10.2.0.0/31" || out.sel.dport != 53 || out.sel.dportMask != 0xffff || out.sel.proto != 17 {
		t.Errorf("out selector %+v", out.sel)
	}
	if in.sel.src.String() != "10.2.0.0/31" || in.sel.sport != 53 || in.sel.sportMask != 0xffff || in.sel.dportMask != 0 {
		t.Errorf("in selector %+v", in.sel)
	}
	if out.tmplSrc != addrA || out.tmplDst != addrB || in.tmplSrc != addrB || in.tmplDst != addrA || in.reqid != 4 {
		t.Errorf("templates out %v->%v in %v->%v", out.tmplSrc, out.tmplDst, in.tmplSrc, in.tmplDst)
	}
	if ps[3].sel.dst.String() != "10.2.0.2/32" || ps[3].priority >= ps[0].priority {
		t.Errorf("second pair %+v prio %d vs %d: the /32 must be preferred", ps[3].sel, ps[3].priority, ps[0].priority)
	}
	p.RemoteTS[0].Proto = 0
	if _, err := policyMsgs(&p); err == nil {
		t.Error("ports without protocol accepted")
	}
}

func TestRangeToPrefixes(t *testing.T) {
	cases := map[[2]string]string{
		{"10.0.0.0", "10.0.0.255"}:             "10.0.0.0/24",
		{"10.0.0.1", "10.0.0.6"}:               "10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32",
		{"0.0.0.0", "255.255.255.255"}:         "0.0.0.0/0",
		{"255.255.255.254", "255.255.255.255"}: "255.255.255.254/31",
		{"2001:db8::", "2001:db8::ffff"}:       "2001:db8::/112",
		{"10.0.0.5", "10.0.0.5"}:               "10.0.0.5/32",
	}
	for r, want := range cases {
		var got []string
		for _, p := range rangeToPrefixes(netip.MustParseAddr(r[0]), netip.MustParseAddr(r[1])) {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s-%s: %v, want %s", r[0], r[1], got, want)
		}
	}
}

func TestRangeToPortBlocks(t *testing.T) {
	cases := []struct {
		s, e uint16
		want []portBlock
	}{
		{0, 0xffff, []portBlock{{0, 0}}},
		{80, 80, []portBlock{{80, 0xffff}}},
		{1024, 2047, []portBlock{{1024, 0xfc00}}},
		{5, 8, []portBlock{{5, 0xffff}, {6, 0xfffe}, {8, 0xffff}}},
		{0xfffe, 0xffff, []portBlock{{0xfffe, 0xfffe}}},
		{0, 0x7fff, []portBlock{{0, 0x8000}}},
	}
	for _, c := range cases {
		got := rangeToPortBlocks(c.s, c.e)
		if len(got) != len(c.want) {
			t.Errorf("%d-%d: %v, want %v", c.s, c.e, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%d-%d: %v, want %v", c.s, c.e, got, c.want)
				break
			}
		}
	}
}

func TestNewSAMsgIPv6(t *testing.T) {
	littleEndian(t)
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	m, err := newSAMsg(&saParams{src: src, dst: dst, spi: 0x01020304, alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, encrKey: make([]byte, 20)})
	if err != nil {
		t.Fatal(err)
	}
	b := m[16:]
	// xfrm_usersa_info: sel.family @40, id.daddr @56, id.spi @72, saddr @80, family @212 (AF_INET6 = 10)
	want := map[int][]byte{
		40:  {10, 0},
		56:  unhex(t, "20010db8 00000000 00000000 00000002 01020304 32"),
		80:  unhex(t, "20010db8 00000000 00000000 00000001"),
		212: {10, 0, 1},
	}
	for off, w := range want {
		if !bytes.Equal(b[off:off+len(w)], w) {
			t.Errorf("offset %d: %x, want %x", off, b[off:off+len(w)], w)
		}
	}
}
