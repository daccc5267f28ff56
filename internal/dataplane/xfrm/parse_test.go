package xfrm

import (
	"encoding/binary"
	"net/netip"
	"testing"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// aeventReply types a kernel answer to GETAE for an ESN SA: xfrm_aevent_id,
// then XFRMA_REPLAY_ESN_VAL (23) and XFRMA_LTIME_VAL (9, struct
// xfrm_lifetime_cur {bytes, packets, add_time, use_time}).
func aeventReply(t testing.TB) []byte {
	id := make([]byte, 48)
	esn := unhex(t, "02000000 05000000 64000000 01000000 02000000 40000000 0f000000 00000080")
	lt := make([]byte, 32)
	binary.LittleEndian.PutUint64(lt[0:], 8400)
	binary.LittleEndian.PutUint64(lt[8:], 100)
	return append(append(id, nlattr(23, esn)...), nlattr(9, lt)...)
}

func TestParseAEvent(t *testing.T) {
	littleEndian(t)
	ev, err := parseAEvent(aeventReply(t))
	if err != nil {
		t.Fatal(err)
	}
	r := ev.replay
	if !r.esnLayout || r.oseq != 5 || r.seq != 100 || r.oseqHi != 1 || r.seqHi != 2 || r.window != 64 ||
		len(r.bmp) != 2 || r.bmp[0] != 0xf || r.bmp[1] != 0x80000000 || ev.bytes != 8400 || ev.packets != 100 {
		t.Fatalf("parsed %+v", ev)
	}
	legacy := append(make([]byte, 48), nlattr(10, unhex(t, "03000000 09000000 ff000000"))...)
	ev, err = parseAEvent(legacy)
	if err != nil || ev.replay.esnLayout || ev.replay.oseq != 3 || ev.replay.seq != 9 || ev.replay.bmp[0] != 0xff {
		t.Fatalf("legacy parsed %+v, %v", ev, err)
	}
	if _, err := parseAEvent(make([]byte, 48)); err == nil {
		t.Error("aevent without replay state accepted")
	}
	// bmp_len claims more words than the attribute holds
	bad := append(make([]byte, 48), nlattr(23, unhex(t, "09000000 00000000 00000000 00000000 00000000 40000000"))...)
	if _, err := parseAEvent(bad); err == nil {
		t.Error("truncated ESN bitmap accepted")
	}
}

func TestParseExpire(t *testing.T) {
	littleEndian(t)
	b := usersaInfoWant([4]byte{10, 0, 0, 2}, [4]byte{10, 0, 0, 1}, 0xc0ffee01, 42, 0, 0, [4]uint64{})
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0) // hard = 1, pad
	ex, err := parseExpire(b)
	if err != nil {
		t.Fatal(err)
	}
	if ex.src != netip.MustParseAddr("10.0.0.1") || ex.dst != netip.MustParseAddr("10.0.0.2") || ex.spi != 0xc0ffee01 || ex.reqid != 42 || !ex.hard {
		t.Fatalf("parsed %+v", ex)
	}
	if _, err := parseExpire(b[:100]); err == nil {
		t.Error("short expire accepted")
	}
	binary.LittleEndian.PutUint16(b[212:], 99)
	if _, err := parseExpire(b); err == nil {
		t.Error("unknown family accepted")
	}
}

func TestParseNlError(t *testing.T) {
	littleEndian(t)
	// nlmsgerr {error = -EPROTONOSUPPORT (93), capped copy of the request
	// header}, then NLMSGERR_ATTR_MSG (1) "Requested type not found\0".
	body := append(unhex(t, "a3ffffff 28000000 10000500 01000000 00000000"), nlattr(1, append([]byte("Requested type not found"), 0))...)
	errno, text, err := parseNlError(nlmFCapped|nlmFAckTLVs, body)
	if err != nil || errno != 93 || text != "Requested type not found" {
		t.Fatalf("got %d %q %v", errno, text, err)
	}
	// uncapped: the whole 40-octet request is echoed before the TLVs
	full := append(unhex(t, "feffffff 28000000 10000500 01000000 00000000"), make([]byte, 24)...)
	full = append(full, nlattr(1, []byte("x"))...)
	errno, text, err = parseNlError(nlmFAckTLVs, full)
	if err != nil || errno != 2 || text != "x" {
		t.Fatalf("uncapped: got %d %q %v", errno, text, err)
	}
	errno, _, err = parseNlError(0, unhex(t, "00000000 24000000 10000500 01000000 00000000"))
	if err != nil || errno != 0 {
		t.Fatalf("ack: got %d %v", errno, err)
	}
}

func TestRingBit(t *testing.T) {
	// Positions per net/xfrm/xfrm_replay.c: number s sits at (s-1) mod window.
	// Window 64, top 100: 100 -> 35, 65 -> 0, 64 -> 63, 37 -> 36.
	for _, c := range []struct{ i, want uint32 }{{0, 35}, {35, 0}, {36, 63}, {63, 36}} {
		if got := ringBit(100, 64, c.i); got != c.want {
			t.Errorf("ringBit(100, 64, %d) = %d, want %d", c.i, got, c.want)
		}
	}
	// top 0 (nothing received): pos = 0xffffffff mod 48 = 15
	if got := ringBit(0, 48, 0); got != 15 {
		t.Errorf("ringBit(0, 48, 0) = %d, want 15", got)
	}
}

func TestReplayConversion(t *testing.T) {
	// Kernel ring for window 64, top 100, with 100, 99 and 65 received:
	// bits 35, 34 and 0.
	k := replayState{esnLayout: true, seq: 100, seqHi: 1, window: 64, bmp: []uint32{1 << 0, 1<<(35-32) | 1<<(34-32)}}
	r := toReplay(&k, 0)
	if r.Seq != 1<<32|100 || r.Window != 64 || len(r.Bitmap) != 2 || r.Bitmap[0] != 0b11 || r.Bitmap[1] != 1<<(35-32) {
		t.Fatalf("toReplay = %+v", r)
	}
	back := replayState{esnLayout: true, window: 64, bmp: make([]uint32, 2)}
	if err := fromReplay(&back, &r, true); err != nil {
		t.Fatal(err)
	}
	if back.seq != 100 || back.seqHi != 1 || back.bmp[0] != k.bmp[0] || back.bmp[1] != k.bmp[1] {
		t.Fatalf("fromReplay = %+v, want %+v", back, k)
	}
	if err := fromReplay(&back, &dp.Replay{Seq: 1 << 32}, false); err == nil {
		t.Error("64-bit sequence number accepted without ESN")
	}
	legacy := replayState{seq: 7, bmp: []uint32{0b101}}
	r = toReplay(&legacy, 32)
	if r.Seq != 7 || r.Window != 32 || r.Bitmap[0] != 0b101 {
		t.Fatalf("legacy toReplay = %+v", r)
	}
}

func TestAdvance(t *testing.T) {
	r := dp.Replay{Seq: 1000, Window: 40, Bitmap: []uint32{1, 0}}
	if err := advance(&r, 1<<30, true); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 1000+1<<30 || r.Bitmap[0] != 0xffffffff || r.Bitmap[1] != 0xff {
		t.Fatalf("advance = %+v", r)
	}
	// Near zero only existing numbers are marked: top 3 -> 3, 2, 1.
	r = dp.Replay{Seq: 0, Window: 32, Bitmap: []uint32{0}}
	if err := advance(&r, 3, false); err != nil || r.Bitmap[0] != 0b111 {
		t.Fatalf("advance from 0 = %+v, %v", r, err)
	}
	r = dp.Replay{Seq: 0xfffffff0, Window: 32, Bitmap: []uint32{0}}
	if err := advance(&r, 0x20, false); err == nil {
		t.Error("32-bit overflow accepted without ESN")
	}
}

// TestParseSAKeys reads the keys back from the NEWSA layout, which is also
// the kernel's answer to GETSA: AddSAs compares them to adopt an SA that a
// killed daemon left behind.
func TestParseSAKeys(t *testing.T) {
	key := func(n int, seed byte) []byte {
		k := make([]byte, n)
		for i := range k {
			k[i] = seed + byte(i)
		}
		return k
	}
	gcm := dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 256}
	cbc := dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_256_128}
	for _, c := range []struct {
		alg          dp.Algorithm
		encr, integ  []byte
		wantIntegNil bool
	}{
		{alg: gcm, encr: key(36, 1), wantIntegNil: true},
		{alg: cbc, encr: key(16, 2), integ: key(32, 3)},
	} {
		m, err := newSAMsg(&saParams{src: addrA, dst: addrB, spi: 9, alg: c.alg, encrKey: c.encr, integKey: c.integ, esn: true, window: 64})
		if err != nil {
			t.Fatal(err)
		}
		encr, integ, err := parseSAKeys(m[sizeNlmsghdr:])
		if err != nil || string(encr) != string(c.encr) || string(integ) != string(c.integ) || (integ == nil) != c.wantIntegNil {
			t.Errorf("%v: keys %x/%x, %v; want %x/%x", c.alg, encr, integ, err, c.encr, c.integ)
		}
	}
	body := append(make([]byte, sizeUsersaInfo), nlattr(attrAlgAEAD, append(make([]byte, 64), 0, 1, 0, 0, 128, 0, 0, 0, 1, 2))...)
	if _, _, err := parseSAKeys(body); err == nil {
		t.Error("a key length beyond the attribute accepted")
	}
	if _, _, err := parseSAKeys(body[:100]); err == nil {
		t.Error("a truncated xfrm_usersa_info accepted")
	}
}

func FuzzParseAEvent(f *testing.F) {
	f.Add(aeventReply(f))
	f.Add(append(make([]byte, 48), nlattr(10, make([]byte, 12))...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseAEvent(b)
		if err == nil && ev.replay.esnLayout && len(ev.replay.bmp) > maxBmpLen {
			t.Fatalf("bitmap of %d words accepted", len(ev.replay.bmp))
		}
	})
}

func FuzzParseNetlink(f *testing.F) {
	f.Add(nlmsg(2, nlmFCapped|nlmFAckTLVs, unhex(f, "a3ffffff 28000000 10000500 01000000 00000000"), nlattr(1, []byte("no"))))
	f.Add(nlmsg(msgExpire, 0, make([]byte, sizeUserExpire)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = parseNlmsgs(b, func(typ, flags uint16, _ uint32, body []byte) bool {
			switch typ {
			case nlmsgError:
				_, _, _ = parseNlError(flags, body)
			case msgExpire:
				_, _ = parseExpire(body)
			case msgNewSA:
				_, _ = parseUsersaInfo(body)
				_, _, _ = parseSAKeys(body)
			}
			return true
		})
	})
}
