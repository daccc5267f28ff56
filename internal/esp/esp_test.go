package esp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// alg is one transform combination with key sizes.
type alg struct {
	name     string
	encr     EncrID
	encrLen  int
	integ    IntegID
	integLen int
}

var algs = []alg{
	{"AES-GCM-16-128", EncrAESGCM16, 16 + 4, IntegNone, 0},
	{"AES-GCM-16-192", EncrAESGCM16, 24 + 4, IntegNone, 0},
	{"AES-GCM-16-256", EncrAESGCM16, 32 + 4, IntegNone, 0},
	{"ChaCha20-Poly1305", EncrChaCha20Poly1305, 32 + 4, IntegNone, 0},
}

func init() {
	integs := []struct {
		id  IntegID
		len int
	}{
		{IntegHMACSHA1_96, 20},
		{IntegHMACSHA2_256128, 32},
		{IntegHMACSHA2_384192, 48},
		{IntegHMACSHA2_512256, 64},
	}
	for _, k := range []int{16, 24, 32} {
		for _, in := range integs {
			algs = append(algs, alg{fmt.Sprintf("AES-CBC-%d/%v", k*8, in.id), EncrAESCBC, k, in.id, in.len})
		}
	}
}

// testKey returns deterministic key material; distinct seeds give distinct keys.
func testKey(n int, seed byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = seed + byte(i)*7
	}
	return k
}

func (a alg) config(dir Direction, esn bool) Config {
	c := Config{SPI: 0xc0ffee01, Direction: dir, Encr: a.encr, EncrKey: testKey(a.encrLen, 1), Integ: a.integ, ESN: esn}
	if a.integLen > 0 {
		c.IntegKey = testKey(a.integLen, 99)
	}
	return c
}

func mustSA(t testing.TB, c Config) *SA {
	t.Helper()
	s, err := NewSA(c)
	if err != nil {
		t.Fatalf("NewSA(%v): %v", c, err)
	}
	return s
}

func pair(t testing.TB, a alg, esn bool) (out, in *SA) {
	return mustSA(t, a.config(Outbound, esn)), mustSA(t, a.config(Inbound, esn))
}

func innerPacket(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*31 + 5)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	for _, a := range algs {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/esn=%t", a.name, esn), func(t *testing.T) {
				out, in := pair(t, a, esn)
				sizes := []int{0, 1, 2, 3, 4, 13, 14, 15, 16, 17, 31, 64, 100, 1400, 9000}
				for i, n := range sizes {
					inner := innerPacket(n)
					nh := byte(4 + i%2*37) // 4 and 41 alternately
					pkt, err := out.Seal(nil, inner, nh)
					if err != nil {
						t.Fatalf("Seal(%d): %v", n, err)
					}
					if len(pkt) != out.SealedLen(n) {
						t.Fatalf("len = %d, SealedLen = %d", len(pkt), out.SealedLen(n))
					}
					if spi := binary.BigEndian.Uint32(pkt); spi != 0xc0ffee01 {
						t.Fatalf("SPI on the wire = %#x", spi)
					}
					if seq := binary.BigEndian.Uint32(pkt[4:]); seq != uint32(i+1) {
						t.Fatalf("sequence number on the wire = %d, want %d", seq, i+1)
					}
					if bytes.Contains(pkt, inner) && n >= 16 {
						t.Fatalf("inner packet visible in ESP packet")
					}
					got, gotNH, err := in.Open(nil, pkt)
					if err != nil {
						t.Fatalf("Open(%d): %v", n, err)
					}
					if !bytes.Equal(got, inner) || gotNH != nh {
						t.Fatalf("Open(%d) = %d bytes nh %d, want %d bytes nh %d", n, len(got), gotNH, n, nh)
					}
				}
				if got := out.OutboundSeq(); got != uint64(len(sizes)) {
					t.Errorf("OutboundSeq = %d, want %d", got, len(sizes))
				}
				var total uint64
				for _, n := range sizes {
					total += uint64(n)
				}
				want := Stats{Packets: uint64(len(sizes)), Bytes: total}
				if st := out.Stats(); st != want {
					t.Errorf("outbound Stats = %+v, want %+v", st, want)
				}
				if st := in.Stats(); st != want {
					t.Errorf("inbound Stats = %+v, want %+v", st, want)
				}
			})
		}
	}
}

// The trailer must end on a 4-octet boundary for the AEADs and on a block
// boundary for CBC (RFC 4303 §2.4), with the minimal padding 1, 2, 3, ...
func TestSealPaddingLayout(t *testing.T) {
	for _, a := range []alg{algs[0], algs[len(algs)-1]} {
		out, _ := pair(t, a, false)
		for n := range 40 {
			pkt, err := out.Seal(nil, innerPacket(n), 4)
			if err != nil {
				t.Fatal(err)
			}
			ct := len(pkt) - out.HeaderLen() - out.icv
			align := 4
			if a.encr == EncrAESCBC {
				align = 16
			}
			if ct%align != 0 || ct < n+2 || ct >= n+2+align {
				t.Fatalf("%s: inner %d gives %d octets of ciphertext", a.name, n, ct)
			}
		}
	}
}

func TestInPlace(t *testing.T) {
	for _, a := range algs {
		out, in := pair(t, a, true)
		inner := innerPacket(1400)
		buf := make([]byte, 0, 2048)
		buf = append(buf[:out.HeaderLen()], inner...)
		pkt, err := out.Seal(buf[:0], buf[out.HeaderLen():], 4)
		if err != nil {
			t.Fatal(err)
		}
		if &pkt[0] != &buf[:1][0] {
			t.Fatalf("%s: Seal into a large enough dst reallocated", a.name)
		}
		got, _, err := in.Open(pkt[:0], pkt)
		if err != nil {
			t.Fatalf("%s: in-place Open: %v", a.name, err)
		}
		if !bytes.Equal(got, inner) || &got[0] != &pkt[0] {
			t.Fatalf("%s: in-place Open returned wrong data or buffer", a.name)
		}

		// Inner packet at the very start of dst: it overlaps the header area.
		buf = append(buf[:0], inner...)
		pkt, err = out.Seal(buf[:0], buf[:len(inner)], 41)
		if err != nil {
			t.Fatal(err)
		}
		// Open into a dst that starts inside the packet.
		got, nh, err := in.Open(pkt[3:3], pkt)
		if err != nil || nh != 41 || !bytes.Equal(got, inner) {
			t.Fatalf("%s: overlapping Open: err %v nh %d equal %t", a.name, err, nh, bytes.Equal(got, inner))
		}
	}
}

func TestOpenAppendsToDst(t *testing.T) {
	out, in := pair(t, algs[2], false)
	pkt, _ := out.Seal([]byte("prefix"), innerPacket(50), 4)
	if !bytes.HasPrefix(pkt, []byte("prefix")) {
		t.Fatal("Seal did not append to dst")
	}
	got, _, err := in.Open([]byte("hdr"), pkt[6:])
	if err != nil || !bytes.Equal(got, append([]byte("hdr"), innerPacket(50)...)) {
		t.Fatalf("Open did not append to dst: %v", err)
	}
}

// Every single-bit change anywhere in the packet must be rejected, and must
// leave the replay window untouched so the genuine packet still gets in.
func TestTamperedRejected(t *testing.T) {
	for _, a := range algs {
		for _, esn := range []bool{false, true} {
			out, in := pair(t, a, esn)
			pkt, err := out.Seal(nil, innerPacket(37), 4)
			if err != nil {
				t.Fatal(err)
			}
			for i := range pkt {
				for _, bit := range []byte{0x01, 0x80} {
					bad := bytes.Clone(pkt)
					bad[i] ^= bit
					_, _, err := in.Open(nil, bad)
					switch {
					case err == nil:
						t.Fatalf("%s esn=%t: flipped bit %#x of octet %d accepted", a.name, esn, bit, i)
					case i < 4 && !errors.Is(err, ErrWrongSPI):
						t.Fatalf("%s: SPI change gave %v", a.name, err)
					case i >= 8 && !errors.Is(err, ErrAuth):
						t.Fatalf("%s: octet %d change gave %v, want ErrAuth", a.name, i, err)
					case i >= 4 && i < 8 && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrReplay):
						t.Fatalf("%s: sequence number change gave %v", a.name, err)
					}
				}
			}
			for _, n := range []int{0, 1, 8, len(pkt) - 1} {
				if _, _, err := in.Open(nil, pkt[:n]); err == nil {
					t.Fatalf("%s: truncated packet (%d) accepted", a.name, n)
				}
			}
			if _, _, err := in.Open(nil, append(bytes.Clone(pkt), 0, 0, 0, 0)); err == nil {
				t.Fatalf("%s: extended packet accepted", a.name)
			}
			if st := in.ReplayState(); st.Top != 0 {
				t.Fatalf("%s: rejected packets moved the window to %d", a.name, st.Top)
			}
			if _, _, err := in.Open(nil, pkt); err != nil {
				t.Fatalf("%s: genuine packet rejected after forgeries: %v", a.name, err)
			}
			if st := in.Stats(); st.AuthFailures == 0 || st.Packets != 1 {
				t.Fatalf("%s: stats after forgeries %+v", a.name, st)
			}
		}
	}
}

func TestWrongKeyRejected(t *testing.T) {
	for _, a := range algs {
		out := mustSA(t, a.config(Outbound, false))
		c := a.config(Inbound, false)
		if a.integLen > 0 {
			c.IntegKey = testKey(a.integLen, 100)
		} else {
			c.EncrKey = testKey(a.encrLen, 2)
		}
		in := mustSA(t, c)
		pkt, _ := out.Seal(nil, innerPacket(64), 4)
		if _, _, err := in.Open(nil, pkt); !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: packet under another key: %v, want ErrAuth", a.name, err)
		}
	}
}

// AEAD salt: the last four octets of the keying material are part of the
// nonce, so a different salt must make authentication fail.
func TestSaltMatters(t *testing.T) {
	for _, a := range algs[:4] {
		out := mustSA(t, a.config(Outbound, false))
		c := a.config(Inbound, false)
		c.EncrKey[len(c.EncrKey)-1] ^= 1
		in := mustSA(t, c)
		pkt, _ := out.Seal(nil, innerPacket(64), 4)
		if _, _, err := in.Open(nil, pkt); !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: different salt: %v, want ErrAuth", a.name, err)
		}
	}
}

// sealRaw encrypts a hand-made plaintext (payload, padding, pad length and
// next header already in place) the way s.seal does, so that padding checks
// can be exercised on authentic packets.
func sealRaw(s *SA, seq uint64, pt []byte) []byte {
	pkt := make([]byte, s.hdrLen, s.hdrLen+len(pt)+s.icv)
	binary.BigEndian.PutUint32(pkt[0:4], s.spi)
	binary.BigEndian.PutUint32(pkt[4:8], uint32(seq))
	if s.suite.aead != nil {
		binary.BigEndian.PutUint64(pkt[8:16], seq)
		return s.suite.aead.Seal(pkt, s.aeadNonce(pkt[8:16]), pt, s.aeadAAD(seq))
	}
	iv := pkt[8:s.hdrLen]
	for i := range iv {
		iv[i] = byte(seq) + byte(i)
	}
	ct := bytes.Clone(pt)
	s.suite.cbcIV.SetIV(iv)
	s.suite.cbc.CryptBlocks(ct, ct)
	pkt = append(pkt, ct...)
	icv := make([]byte, s.icv)
	s.mac(pkt, seq, icv)
	return append(pkt, icv...)
}

func TestPaddingChecks(t *testing.T) {
	for _, a := range []alg{algs[0], algs[3], algs[5]} {
		for _, esn := range []bool{false, true} {
			out, in := pair(t, a, esn)
			align := out.suite.align
			mk := func(payload int, pad []byte, padLen byte) []byte {
				pt := append(innerPacket(payload), pad...)
				pt = append(pt, padLen, 4)
				if len(pt)%align != 0 {
					t.Fatalf("bad test plaintext length %d", len(pt))
				}
				return pt
			}
			seq := uint64(0)
			open := func(pt []byte) ([]byte, error) {
				seq++
				got, _, err := in.Open(nil, sealRaw(out, seq, pt))
				return got, err
			}
			seqPad := func(n int) []byte {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(i + 1)
				}
				return p
			}
			// Longer-than-minimal default padding is legal (RFC 4303 §2.4).
			for _, n := range []int{0, align + 2, 14, 254} {
				payload := (align*32 - n - 2) % align
				for payload < 0 || (payload+n+2)%align != 0 {
					payload++
				}
				got, err := open(mk(payload, seqPad(n), byte(n)))
				if err != nil || len(got) != payload {
					t.Fatalf("%s: %d octets of valid padding: err %v, len %d want %d", a.name, n, err, len(got), payload)
				}
			}
			// Wrong padding contents.
			bad := seqPad(6)
			bad[3] = 0
			if _, err := open(mk(align*4-8, bad, 6)); !errors.Is(err, ErrPadding) {
				t.Fatalf("%s: wrong padding octet: %v, want ErrPadding", a.name, err)
			}
			// Pad length pointing before the start of the payload.
			if _, err := open(mk(align*2-2, nil, 255)); !errors.Is(err, ErrPadding) {
				t.Fatalf("%s: pad length beyond payload: %v, want ErrPadding", a.name, err)
			}
			if st := in.Stats(); st.Malformed != 2 {
				t.Fatalf("%s: Malformed = %d, want 2", a.name, st.Malformed)
			}
		}
	}
}

func TestCounterExhaustion(t *testing.T) {
	for _, a := range []alg{algs[2], algs[6]} {
		for _, esn := range []bool{false, true} {
			out, in := pair(t, a, esn)
			last := uint64(math.MaxUint32)
			if esn {
				last = math.MaxUint64
			}
			if err := out.SetOutboundSeq(last - 1); err != nil {
				t.Fatal(err)
			}
			if esn {
				// Give the receiver a window near the end so it infers the
				// high-order bits of the last packets correctly.
				if err := in.SetReplayState(ReplayState{Top: last - 10, Bitmap: make([]uint64, 16)}); err != nil {
					t.Fatal(err)
				}
			}
			pkt, err := out.Seal(nil, innerPacket(20), 4)
			if err != nil {
				t.Fatalf("%s esn=%t: Seal of the last sequence number: %v", a.name, esn, err)
			}
			if seq := binary.BigEndian.Uint32(pkt[4:]); seq != math.MaxUint32 {
				t.Fatalf("last sequence number on the wire = %#x", seq)
			}
			if _, _, err := in.Open(nil, pkt); err != nil {
				t.Fatalf("%s esn=%t: Open of the last sequence number: %v", a.name, esn, err)
			}
			if st := in.ReplayState(); st.Top != last {
				t.Fatalf("receiver top = %#x, want %#x", st.Top, last)
			}
			for range 3 {
				if _, err := out.Seal(nil, innerPacket(20), 4); !errors.Is(err, ErrSeqExhausted) {
					t.Fatalf("%s esn=%t: Seal past the end: %v, want ErrSeqExhausted", a.name, esn, err)
				}
			}
			if got := out.OutboundSeq(); got != last {
				t.Fatalf("counter moved to %#x after refusals", got)
			}
			if err := out.AdvanceOutboundSeq(1); !errors.Is(err, ErrSeqExhausted) {
				t.Fatalf("AdvanceOutboundSeq past the end: %v", err)
			}
		}
	}
}

func TestSetOutboundSeq(t *testing.T) {
	for _, esn := range []bool{false, true} {
		out, in := pair(t, algs[0], esn)
		for range 5 {
			out.Seal(nil, nil, 59)
		}
		if err := out.SetOutboundSeq(4); !errors.Is(err, ErrSeqBackwards) {
			t.Fatalf("backwards: %v", err)
		}
		if err := out.SetOutboundSeq(5); err != nil {
			t.Fatalf("same value: %v", err)
		}
		if err := out.SetOutboundSeq(1 << 30); err != nil {
			t.Fatalf("forward: %v", err)
		}
		if got := out.OutboundSeq(); got != 1<<30 {
			t.Fatalf("OutboundSeq = %d", got)
		}
		pkt, _ := out.Seal(nil, innerPacket(10), 4)
		if seq := binary.BigEndian.Uint32(pkt[4:]); seq != 1<<30+1 {
			t.Fatalf("next packet carries %d, want 2^30+1", seq)
		}
		if _, _, err := in.Open(nil, pkt); err != nil {
			t.Fatalf("receiver rejects the jumped packet: %v", err)
		}
		if err := out.AdvanceOutboundSeq(1000); err != nil {
			t.Fatal(err)
		}
		if got := out.OutboundSeq(); got != 1<<30+1+1000 {
			t.Fatalf("after AdvanceOutboundSeq: %d", got)
		}
		err := out.SetOutboundSeq(1 << 32)
		if esn && err != nil {
			t.Fatalf("ESN: SetOutboundSeq(2^32): %v", err)
		}
		if !esn && !errors.Is(err, ErrSeqExhausted) {
			t.Fatalf("non-ESN: SetOutboundSeq(2^32): %v, want ErrSeqExhausted", err)
		}
		if !esn {
			if err := out.AdvanceOutboundSeq(math.MaxUint32); !errors.Is(err, ErrSeqExhausted) {
				t.Fatalf("non-ESN AdvanceOutboundSeq overflow: %v", err)
			}
			if got := out.OutboundSeq(); got != 1<<30+1+1000 {
				t.Fatalf("failed advance moved the counter to %d", got)
			}
		}
	}
}

func TestSoftLimit(t *testing.T) {
	fired := 0
	c := algs[0].config(Outbound, false)
	c.SoftLimit = 10
	c.OnSoftLimit = func() { fired++ }
	out := mustSA(t, c)
	for i := 1; i <= 30; i++ {
		if _, err := out.Seal(nil, nil, 59); err != nil {
			t.Fatal(err)
		}
		if want := 0; i >= 10 {
			want = 1
			if fired != want {
				t.Fatalf("after %d packets OnSoftLimit fired %d times, want %d", i, fired, want)
			}
		} else if fired != want {
			t.Fatalf("OnSoftLimit fired early, at packet %d", i)
		}
	}

	// A counter jump across the limit fires it too.
	fired = 0
	out = mustSA(t, c)
	out.SetOutboundSeq(100)
	if fired != 1 {
		t.Fatalf("SetOutboundSeq across the soft limit fired %d times", fired)
	}

	// The default limit sits at three quarters of the space.
	fired = 0
	c.SoftLimit = 0
	out = mustSA(t, c)
	out.SetOutboundSeq(0xbfffffff - 1)
	out.Seal(nil, nil, 59)
	if fired != 0 {
		t.Fatal("default soft limit fired below 0xc0000000")
	}
	out.Seal(nil, nil, 59)
	if fired != 1 {
		t.Fatal("default soft limit did not fire at 0xc0000000")
	}
}

func TestDirection(t *testing.T) {
	out, in := pair(t, algs[0], false)
	if _, err := in.Seal(nil, nil, 4); !errors.Is(err, ErrDirection) {
		t.Errorf("Seal on inbound SA: %v", err)
	}
	if _, _, err := out.Open(nil, make([]byte, 64)); !errors.Is(err, ErrDirection) {
		t.Errorf("Open on outbound SA: %v", err)
	}
	if err := in.SetOutboundSeq(5); !errors.Is(err, ErrDirection) {
		t.Errorf("SetOutboundSeq on inbound SA: %v", err)
	}
	if err := out.AdvanceReplayWindow(5); !errors.Is(err, ErrDirection) {
		t.Errorf("AdvanceReplayWindow on outbound SA: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	good := algs[0].config(Inbound, false)
	cbc := algs[5].config(Inbound, false)
	cases := map[string]func(c *Config){
		"zero SPI":          func(c *Config) { c.SPI = 0 },
		"no direction":      func(c *Config) { c.Direction = 0 },
		"GCM key 16":        func(c *Config) { c.EncrKey = testKey(16, 1) },
		"GCM with INTEG":    func(c *Config) { c.Integ = IntegHMACSHA2_256128; c.IntegKey = testKey(32, 1) },
		"window 0<w<64":     func(c *Config) { c.ReplayWindow = 32 },
		"window not *64":    func(c *Config) { c.ReplayWindow = 100 },
		"window too big":    func(c *Config) { c.ReplayWindow = MaxReplayWindow + 64 },
		"unknown ENCR":      func(c *Config) { c.Encr = 3 },
		"ChaCha key 32":     func(c *Config) { c.Encr = EncrChaCha20Poly1305; c.EncrKey = testKey(32, 1) },
		"CBC without INTEG": func(c *Config) { *c = cbc; c.Integ = IntegNone; c.IntegKey = nil },
		"CBC key 20":        func(c *Config) { *c = cbc; c.EncrKey = testKey(20, 1) },
		"CBC short INTEG":   func(c *Config) { *c = cbc; c.IntegKey = c.IntegKey[:16] },
		"CBC unknown INTEG": func(c *Config) { *c = cbc; c.Integ = 5 },
	}
	for name, mod := range cases {
		c := good
		mod(&c)
		if _, err := NewSA(c); err == nil {
			t.Errorf("%s: NewSA accepted %v", name, c)
		}
	}
	for _, w := range []int{64, 128, 4096} {
		c := good
		c.ReplayWindow = w
		if _, err := NewSA(c); err != nil {
			t.Errorf("window %d rejected: %v", w, err)
		}
	}
}

func TestConfigStringHidesKeys(t *testing.T) {
	c := algs[5].config(Outbound, true)
	s := fmt.Sprintf("%v %+v %s", c, c, c)
	for _, k := range [][]byte{c.EncrKey, c.IntegKey} {
		if strings.Contains(s, fmt.Sprintf("%x", k[:4])) || strings.Contains(s, fmt.Sprint(k[:4])[1:8]) {
			t.Fatalf("formatted Config leaks key material: %s", s)
		}
	}
	if !strings.Contains(s, "AES-CBC") || !strings.Contains(s, "0xc0ffee01") {
		t.Fatalf("formatted Config lacks the transform or SPI: %s", s)
	}
}

// The packet path must not allocate once buffers are sized (hike's per-packet
// budget leaves no room for garbage collection work).
func TestNoAllocs(t *testing.T) {
	for _, a := range algs {
		for _, esn := range []bool{false, true} {
			out, in := pair(t, a, esn)
			inner := innerPacket(1400)
			buf := make([]byte, 0, out.SealedLen(len(inner)))
			dst := make([]byte, 0, 2048)
			if n := testing.AllocsPerRun(100, func() {
				if _, err := out.Seal(buf, inner, 4); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%s esn=%t: Seal allocates %.1f times", a.name, esn, n)
			}
			pkts := make([][]byte, 101)
			for i := range pkts {
				pkts[i], _ = out.Seal(nil, inner, 4)
			}
			i := 0
			if n := testing.AllocsPerRun(100, func() {
				if _, _, err := in.Open(dst, pkts[i]); err != nil {
					t.Fatal(err)
				}
				i++
			}); n != 0 {
				t.Errorf("%s esn=%t: Open allocates %.1f times", a.name, esn, n)
			}
		}
	}
}
