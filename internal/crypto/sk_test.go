package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/hike-vpn/hike/internal/wire"
)

type suite struct {
	name  string
	encr  *Encr
	integ *Integ
}

func mustEncr(t testing.TB, id, bits uint16) *Encr {
	e, err := LookupEncr(id, bits)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustInteg(t testing.TB, id uint16) *Integ {
	i, err := LookupInteg(id)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func suites(t testing.TB) []suite {
	var ss []suite
	for _, bits := range []uint16{128, 192, 256} {
		for _, id := range []uint16{wire.AUTH_HMAC_SHA1_96, wire.AUTH_HMAC_SHA2_256_128, wire.AUTH_HMAC_SHA2_384_192, wire.AUTH_HMAC_SHA2_512_256} {
			ss = append(ss, suite{fmt.Sprintf("AES-CBC-%d/INTEG-%d", bits, id), mustEncr(t, wire.ENCR_AES_CBC, bits), mustInteg(t, id)})
		}
	}
	ss = append(ss,
		suite{"AES-GCM-16-128", mustEncr(t, wire.ENCR_AES_GCM_16, 128), nil},
		suite{"AES-GCM-16-256", mustEncr(t, wire.ENCR_AES_GCM_16, 256), nil},
		suite{"ChaCha20-Poly1305", mustEncr(t, wire.ENCR_CHACHA20_POLY1305, 0), nil},
	)
	return ss
}

// testKeys derives distinct, deterministic keys of the right sizes.
func testKeys(s suite, seed byte) *IKEKeys {
	fill := func(n int, tag byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed ^ tag ^ byte(i*7)
		}
		return b
	}
	k := &IKEKeys{Ei: fill(s.encr.KeyLen, 0x10), Er: fill(s.encr.KeyLen, 0x20)}
	if s.integ != nil {
		k.Ai, k.Ar = fill(s.integ.KeyLen, 0x30), fill(s.integ.KeyLen, 0x40)
	}
	return k
}

func pair(t testing.TB, s suite) (ini, res *SK, k *IKEKeys) {
	k = testKeys(s, 1)
	ini, err := NewSK(s.encr, s.integ, k, true)
	if err != nil {
		t.Fatal(err)
	}
	res, err = NewSK(s.encr, s.integ, k, false)
	if err != nil {
		t.Fatal(err)
	}
	return ini, res, k
}

func testHeader(resp bool) wire.Header {
	h := wire.Header{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, Exchange: wire.INFORMATIONAL, MessageID: 7}
	if resp {
		h.Flags = wire.FlagResponse
	} else {
		h.Flags = wire.FlagInitiator
	}
	return h
}

func innerChain(n int) []byte {
	var w wire.Builder
	w.ResetChain(nil)
	body := make([]byte, n)
	for i := range body {
		body[i] = byte(i)
	}
	w.Add(wire.PayloadVendor, body)
	return w.Finish()
}

func parseSK(t testing.TB, msg []byte) (wire.Message, wire.Payload) {
	t.Helper()
	var m wire.Message
	if err := m.Parse(msg); err != nil {
		t.Fatalf("sealed message does not parse: %v", err)
	}
	p, ok := m.Find(wire.PayloadSK)
	if !ok {
		t.Fatal("no SK payload")
	}
	return m, p
}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, s := range suites(t) {
		t.Run(s.name, func(t *testing.T) {
			ini, res, _ := pair(t, s)
			for _, n := range []int{0, 1, 11, 12, 27, 100, 1000} {
				inner := []byte{}
				first := wire.PayloadNone
				if n > 0 {
					inner, first = innerChain(n), wire.PayloadVendor
				}
				for _, dir := range []struct {
					from, to *SK
					resp     bool
				}{{ini, res, false}, {res, ini, true}} {
					msg, err := dir.from.Seal([]byte("prefix"), testHeader(dir.resp), first, inner)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(msg[:6], []byte("prefix")) {
						t.Fatal("Seal overwrote what preceded the message")
					}
					msg = msg[6:]
					m, p := parseSK(t, msg)
					if m.Header.NextPayload != wire.PayloadSK || int(m.Header.Length) != len(msg) || p.Next != first {
						t.Fatalf("header next %v len %d/%d, SK next %v", m.Header.NextPayload, m.Header.Length, len(msg), p.Next)
					}
					if m.Header.MessageID != 7 || m.Header.Exchange != wire.INFORMATIONAL {
						t.Fatal("header fields not kept")
					}
					if got := len(msg) - wire.HeaderLen; got != dir.from.Overhead(len(inner))+len(inner) {
						t.Fatalf("Overhead(%d) = %d, message carries %d", len(inner), dir.from.Overhead(len(inner)), got-len(inner))
					}
					pt, typ, err := dir.to.Open(nil, m.Raw, p)
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					if typ != first || !bytes.Equal(pt, inner) {
						t.Fatalf("Open returned %v %x, want %v %x", typ, pt, first, inner)
					}
					// The wrong direction's keys must not open it.
					if _, _, err := dir.from.Open(nil, m.Raw, p); !errors.Is(err, ErrIntegrity) {
						t.Fatalf("sender opened its own message: %v", err)
					}
					pt, typ, err = dir.to.OpenInPlace(m.Raw, p)
					if err != nil || typ != first || !bytes.Equal(pt, inner) {
						t.Fatalf("OpenInPlace: %v", err)
					}
				}
			}
		})
	}
}

// TestSealLayout decrypts sealed messages with the standard library alone,
// following RFC 7296 §3.14 (CBC: ICV over header through ciphertext) and
// RFC 5282 §3-§5 (nonce = salt | IV, AAD = IKE header through the SK
// generic header, no padding but the pad length octet).
func TestSealLayout(t *testing.T) {
	inner := innerChain(37)
	t.Run("AES-CBC-256/HMAC-SHA2-256-128", func(t *testing.T) {
		s := suite{"", mustEncr(t, wire.ENCR_AES_CBC, 256), mustInteg(t, wire.AUTH_HMAC_SHA2_256_128)}
		ini, _, k := pair(t, s)
		msg, err := ini.Seal(nil, testHeader(false), wire.PayloadVendor, inner)
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, k.Ai)
		mac.Write(msg[:len(msg)-16])
		if !bytes.Equal(mac.Sum(nil)[:16], msg[len(msg)-16:]) {
			t.Fatal("ICV is not HMAC-SHA-256/128 over header through ciphertext with SK_ai")
		}
		b, _ := aes.NewCipher(k.Ei)
		iv := msg[32:48]
		ct := msg[48 : len(msg)-16]
		if len(ct)%16 != 0 {
			t.Fatal("ciphertext not block aligned")
		}
		pt := make([]byte, len(ct))
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(pt, ct)
		pad := int(pt[len(pt)-1])
		if !bytes.Equal(pt[:len(pt)-1-pad], inner) || len(pt) != (len(inner)+1+15)/16*16 {
			t.Fatalf("plaintext %x, pad %d", pt, pad)
		}
		// Two messages must not share an IV (RFC 7296 §3.14: unpredictable).
		msg2, _ := ini.Seal(nil, testHeader(false), wire.PayloadVendor, inner)
		if bytes.Equal(msg2[32:48], iv) {
			t.Fatal("CBC IV repeated")
		}
	})
	for _, s := range []suite{
		{"AES-GCM-16-256", mustEncr(t, wire.ENCR_AES_GCM_16, 256), nil},
		{"ChaCha20-Poly1305", mustEncr(t, wire.ENCR_CHACHA20_POLY1305, 0), nil},
	} {
		t.Run(s.name, func(t *testing.T) {
			_, res, k := pair(t, s)
			res.AdvanceIV(0x0102030405060708)
			msg, err := res.Seal(nil, testHeader(true), wire.PayloadVendor, inner)
			if err != nil {
				t.Fatal(err)
			}
			key, salt := k.Er[:len(k.Er)-4], k.Er[len(k.Er)-4:]
			var a cipher.AEAD
			if s.encr.ID == wire.ENCR_AES_GCM_16 {
				b, _ := aes.NewCipher(key)
				a, _ = cipher.NewGCM(b)
			} else {
				a, _ = chacha20poly1305.New(key)
			}
			iv := msg[32:40]
			if binary.BigEndian.Uint64(iv) != 0x0102030405060708 {
				t.Fatalf("IV %x is not the counter", iv)
			}
			pt, err := a.Open(nil, append(append([]byte{}, salt...), iv...), msg[40:], msg[:32])
			if err != nil {
				t.Fatalf("independent AEAD open: %v", err)
			}
			want := append(append([]byte{}, inner...), 0)
			if !bytes.Equal(pt, want) {
				t.Fatalf("plaintext %x, want payloads and a zero pad length", pt)
			}
		})
	}
}

// TestOpenForeignPadding accepts padding other implementations may send:
// RFC 7296 §3.14 allows up to 255 octets of any value for CBC, and RFC 5282
// §3 any amount without alignment for AEAD.
func TestOpenForeignPadding(t *testing.T) {
	inner := innerChain(5)
	for _, s := range suites(t) {
		t.Run(s.name, func(t *testing.T) {
			k := testKeys(s, 9)
			res, _ := NewSK(s.encr, s.integ, k, false)
			padLen := 3
			if !s.encr.AEAD() {
				padLen = 255 - (len(inner)+1+255)%16 // aligned, more than a block
			}
			pt := append(append([]byte{}, inner...), bytes.Repeat([]byte{0xa5}, padLen)...)
			pt = append(pt, byte(padLen))
			msg := sealByHand(t, s, k.Ei, k.Ai, pt)
			m, p := parseSK(t, msg)
			got, _, err := res.Open(nil, m.Raw, p)
			if err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("Open: %v, %x", err, got)
			}
			// A pad length that reaches past the plaintext authenticates but
			// is malformed: INVALID_SYNTAX, not an integrity failure.
			short := 3
			if !s.encr.AEAD() {
				short = (32 - (len(inner)+1)%16) % 16
			}
			bad := append(append([]byte{}, inner...), make([]byte, short)...)
			bad = append(bad, byte(len(bad)+1))
			msg = sealByHand(t, s, k.Ei, k.Ai, bad)
			m, p = parseSK(t, msg)
			_, _, err = res.Open(nil, m.Raw, p)
			var we *wire.Error
			if !errors.As(err, &we) || we.Notify != wire.INVALID_SYNTAX {
				t.Fatalf("bad padding: %v", err)
			}
		})
	}
}

// sealByHand builds an initiator-to-responder SK message from a complete
// plaintext (payloads, padding, pad length) with the standard library.
func sealByHand(t *testing.T, s suite, ek, ak, pt []byte) []byte {
	t.Helper()
	h := testHeader(false)
	e := s.encr
	icv := e.ICVLen
	if s.integ != nil {
		icv = s.integ.ICVLen
	}
	plen := wire.GenericHeaderLen + e.IVLen + len(pt) + icv
	h.NextPayload = wire.PayloadSK
	h.Length = uint32(wire.HeaderLen + plen)
	msg := h.Append(nil)
	msg = wire.AppendPayloadHeader(msg, wire.PayloadVendor, false, plen)
	iv := bytes.Repeat([]byte{0x3c}, e.IVLen)
	aad := append([]byte{}, msg...)
	msg = append(msg, iv...)
	if e.AEAD() {
		key, salt := ek[:len(ek)-e.SaltLen], ek[len(ek)-e.SaltLen:]
		var a cipher.AEAD
		if e.ID == wire.ENCR_AES_GCM_16 {
			b, _ := aes.NewCipher(key)
			a, _ = cipher.NewGCM(b)
		} else {
			a, _ = chacha20poly1305.New(key)
		}
		return a.Seal(msg, append(append([]byte{}, salt...), iv...), pt, aad)
	}
	b, _ := aes.NewCipher(ek)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, pt)
	msg = append(msg, ct...)
	mac := s.integ.New(ak)
	mac.Write(msg)
	return append(msg, mac.Sum(nil)[:icv]...)
}

// TestOpenTamper flips every octet of a sealed message, header included:
// each must fail integrity.
func TestOpenTamper(t *testing.T) {
	for _, s := range suites(t) {
		t.Run(s.name, func(t *testing.T) {
			ini, res, _ := pair(t, s)
			msg, err := ini.Seal(nil, testHeader(false), wire.PayloadVendor, innerChain(20))
			if err != nil {
				t.Fatal(err)
			}
			for i := range msg {
				c := append([]byte{}, msg...)
				c[i] ^= 0x01
				p := wire.Payload{Type: wire.PayloadSK, Next: wire.PayloadType(c[28]), Body: c[32:]}
				if _, _, err := res.Open(nil, c, p); !errors.Is(err, ErrIntegrity) {
					t.Fatalf("flipping octet %d: err %v", i, err)
				}
			}
			// Truncations, including to less than IV + ICV.
			for n := len(msg) - 1; n >= 32; n-- {
				c := append([]byte{}, msg[:n]...)
				p := wire.Payload{Type: wire.PayloadSK, Body: c[32:]}
				if _, _, err := res.Open(nil, c, p); !errors.Is(err, ErrIntegrity) {
					t.Fatalf("truncated to %d: err %v", n, err)
				}
			}
		})
	}
}

func TestOpenRejectsForeignBody(t *testing.T) {
	s := suites(t)[0]
	ini, res, _ := pair(t, s)
	msg, _ := ini.Seal(nil, testHeader(false), wire.PayloadVendor, innerChain(20))
	body := append([]byte{}, msg[32:]...)
	if _, _, err := res.Open(nil, msg, wire.Payload{Type: wire.PayloadSK, Body: body}); err == nil {
		t.Fatal("Open accepted an SK body that is not the message's tail")
	}
}

func TestAEADIVCounter(t *testing.T) {
	s := suite{"", mustEncr(t, wire.ENCR_AES_GCM_16, 128), nil}
	ini, res, _ := pair(t, s)
	seen := map[uint64]bool{}
	for i := 0; i < 5; i++ {
		msg, err := ini.Seal(nil, testHeader(false), wire.PayloadNone, nil)
		if err != nil {
			t.Fatal(err)
		}
		iv := binary.BigEndian.Uint64(msg[32:40])
		if seen[iv] {
			t.Fatalf("IV %d repeated", iv)
		}
		seen[iv] = true
	}
	if ini.NextIV() != 5 {
		t.Fatalf("NextIV = %d after 5 messages", ini.NextIV())
	}
	ini.AdvanceIV(1000)
	ini.AdvanceIV(10) // a stale mark must not move the counter back
	msg, _ := ini.Seal(nil, testHeader(false), wire.PayloadNone, nil)
	if iv := binary.BigEndian.Uint64(msg[32:40]); iv != 1000 {
		t.Fatalf("IV after AdvanceIV(1000) = %d", iv)
	}
	m, p := parseSK(t, msg)
	if _, _, err := res.Open(nil, m.Raw, p); err != nil {
		t.Fatal(err)
	}
	ini.AdvanceIV(^uint64(0))
	if _, err := ini.Seal(nil, testHeader(false), wire.PayloadNone, nil); err != nil {
		t.Fatalf("last IV: %v", err)
	}
	if _, err := ini.Seal(nil, testHeader(false), wire.PayloadNone, nil); !errors.Is(err, ErrIVExhausted) {
		t.Fatalf("after the last IV: %v", err)
	}
}

func TestNewSKRejectsBadKeys(t *testing.T) {
	for _, s := range suites(t) {
		k := testKeys(s, 3)
		k.Er = k.Er[:len(k.Er)-1]
		if _, err := NewSK(s.encr, s.integ, k, true); err == nil {
			t.Fatalf("%s: short SK_er accepted", s.name)
		}
		if s.integ != nil {
			k := testKeys(s, 3)
			k.Ai = append(k.Ai, 0)
			if _, err := NewSK(s.encr, s.integ, k, true); err == nil {
				t.Fatalf("%s: long SK_ai accepted", s.name)
			}
			if _, err := NewSK(s.encr, nil, testKeys(s, 3), true); err == nil {
				t.Fatalf("%s: CBC without INTEG accepted", s.name)
			}
		}
	}
}

// dpdBuffers holds what a worker keeps per shard for the DPD hot path.
type dpdBuffers struct {
	msg   wire.Message
	inner []byte
	chain []wire.Payload
	out   []byte
	w     wire.Builder
}

// dpdRespond opens a DPD request (an INFORMATIONAL with an empty SK) and
// seals the empty response, the way the IKE layer will.
func dpdRespond(sk *SK, b *dpdBuffers, req []byte) ([]byte, error) {
	if err := b.msg.Parse(req); err != nil {
		return nil, err
	}
	p, ok := b.msg.Find(wire.PayloadSK)
	if !ok {
		return nil, errors.New("no SK")
	}
	inner, first, err := sk.Open(b.inner[:0], b.msg.Raw, p)
	if err != nil {
		return nil, err
	}
	b.chain, err = wire.ParseChain(b.chain[:0], first, inner)
	if err != nil {
		return nil, err
	}
	if len(b.chain) != 0 {
		return nil, errors.New("not a DPD")
	}
	h := b.msg.Header
	h.Flags = wire.FlagResponse
	b.w.ResetChain(b.inner[:0])
	return sk.Seal(b.out[:0], h, b.w.First(), b.w.Finish())
}

func dpdSetup(tb testing.TB, s suite) (*SK, *SK, *dpdBuffers, []byte) {
	ini, res, _ := pair(tb, s)
	req, err := ini.Seal(nil, testHeader(false), wire.PayloadNone, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return ini, res, &dpdBuffers{inner: make([]byte, 0, 256), chain: make([]wire.Payload, 0, 8), out: make([]byte, 0, 256)}, req
}

func TestDPDHotPathAllocs(t *testing.T) {
	for _, s := range []suite{
		{"AES-GCM-16-256", mustEncr(t, wire.ENCR_AES_GCM_16, 256), nil},
		{"AES-CBC-256/HMAC-SHA2-256-128", mustEncr(t, wire.ENCR_AES_CBC, 256), mustInteg(t, wire.AUTH_HMAC_SHA2_256_128)},
	} {
		t.Run(s.name, func(t *testing.T) {
			ini, res, b, req := dpdSetup(t, s)
			resp, err := dpdRespond(res, b, req)
			if err != nil {
				t.Fatal(err)
			}
			m, p := parseSK(t, resp)
			if pt, _, err := ini.Open(nil, m.Raw, p); err != nil || len(pt) != 0 || !m.Header.IsResponse() {
				t.Fatalf("DPD response does not open as an empty response: %v", err)
			}
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := dpdRespond(res, b, req); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 2 {
				t.Fatalf("DPD exchange allocates %.1f times, want ≤ 2", allocs)
			}
			t.Logf("allocs per DPD exchange: %.1f", allocs)
		})
	}
}

func BenchmarkDPD(b *testing.B) {
	for _, s := range []suite{
		{"AES-GCM-16-256", mustEncr(b, wire.ENCR_AES_GCM_16, 256), nil},
		{"ChaCha20-Poly1305", mustEncr(b, wire.ENCR_CHACHA20_POLY1305, 0), nil},
		{"AES-CBC-256-HMAC-SHA2-256-128", mustEncr(b, wire.ENCR_AES_CBC, 256), mustInteg(b, wire.AUTH_HMAC_SHA2_256_128)},
	} {
		b.Run(s.name, func(b *testing.B) {
			_, res, buf, req := dpdSetup(b, s)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := dpdRespond(res, buf, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestFragmentsRoundTrip(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, s := range suites(t) {
		t.Run(s.name, func(t *testing.T) {
			ini, res, _ := pair(t, s)
			for _, n := range []int{0, 10, 500, 3000} {
				for _, maxLen := range []int{100, 548, 1232} {
					inner := []byte{}
					if n > 0 {
						inner = innerChain(n)
					}
					h := testHeader(false)
					h.Exchange = wire.IKE_AUTH
					_, frags, err := ini.SealFragments(nil, nil, h, wire.PayloadVendor, inner, maxLen)
					if err != nil {
						t.Fatalf("n=%d max=%d: %v", n, maxLen, err)
					}
					for i, f := range frags {
						if len(f) > maxLen {
							t.Fatalf("fragment %d is %d octets, limit %d", i, len(f), maxLen)
						}
						var m wire.Message
						if err := m.Parse(f); err != nil || m.Header.NextPayload != wire.PayloadSKF || m.Header.MessageID != h.MessageID {
							t.Fatalf("fragment %d: %v", i, err)
						}
						p, _ := m.Find(wire.PayloadSKF)
						wantNext := wire.PayloadNone
						if i == 0 {
							wantNext = wire.PayloadVendor
						}
						if p.Next != wantNext || int(binary.BigEndian.Uint16(p.Body)) != i+1 || int(binary.BigEndian.Uint16(p.Body[2:])) != len(frags) {
							t.Fatalf("fragment %d: next %v, numbers %x", i, p.Next, p.Body[:4])
						}
					}
					order := rng.Perm(len(frags))
					var r Reassembler
					var got []byte
					done := false
					for j, i := range order {
						var m wire.Message
						if err := m.Parse(frags[i]); err != nil {
							t.Fatal(err)
						}
						p, _ := m.Find(wire.PayloadSKF)
						inner, first, ok, err := r.Add(res, m.Raw, p)
						if err != nil {
							t.Fatalf("fragment %d: %v", i, err)
						}
						if ok != (j == len(order)-1) {
							t.Fatalf("done=%v after %d of %d", ok, j+1, len(order))
						}
						if ok {
							if first != wire.PayloadVendor {
								t.Fatalf("first = %v", first)
							}
							got, done = inner, true
						} else if j < len(order)-1 {
							// A duplicate is dropped.
							if _, _, _, err := r.Add(res, m.Raw, p); !errors.Is(err, ErrFragmentDropped) {
								t.Fatalf("duplicate: %v", err)
							}
						}
					}
					if !done || !bytes.Equal(got, inner) {
						t.Fatalf("n=%d max=%d: reassembled %d octets, want %d", n, maxLen, len(got), len(inner))
					}
				}
			}
		})
	}
}

func fragPayload(t *testing.T, f []byte) (wire.Message, wire.Payload) {
	t.Helper()
	var m wire.Message
	if err := m.Parse(f); err != nil {
		t.Fatal(err)
	}
	p, _ := m.Find(wire.PayloadSKF)
	return m, p
}

func TestReassemblerRules(t *testing.T) {
	s := suite{"", mustEncr(t, wire.ENCR_AES_GCM_16, 256), nil}
	ini, res, _ := pair(t, s)
	inner := innerChain(2000)
	h := testHeader(false)
	_, big, err := ini.SealFragments(nil, nil, h, wire.PayloadVendor, inner, 1232)
	if err != nil {
		t.Fatal(err)
	}
	_, small, err := ini.SealFragments(nil, nil, h, wire.PayloadVendor, inner, 548)
	if err != nil {
		t.Fatal(err)
	}
	if len(small) <= len(big) {
		t.Fatal("test needs the smaller size to give more fragments")
	}

	t.Run("higher total restarts, lower is dropped", func(t *testing.T) {
		var r Reassembler
		m, p := fragPayload(t, big[0])
		if _, _, _, err := r.Add(res, m.Raw, p); err != nil {
			t.Fatal(err)
		}
		for i, f := range small {
			m, p := fragPayload(t, f)
			_, _, done, err := r.Add(res, m.Raw, p)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				// An older-set fragment is now stale.
				m, p := fragPayload(t, big[1])
				if _, _, _, err := r.Add(res, m.Raw, p); !errors.Is(err, ErrFragmentDropped) {
					t.Fatalf("lower total: %v", err)
				}
			}
			if done != (i == len(small)-1) {
				t.Fatalf("done=%v at %d", done, i)
			}
		}
	})
	t.Run("bad ICV is dropped and not stored", func(t *testing.T) {
		var r Reassembler
		for i, f := range big {
			c := append([]byte{}, f...)
			c[len(c)-1] ^= 1
			m, p := fragPayload(t, c)
			if _, _, _, err := r.Add(res, m.Raw, p); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("tampered fragment %d: %v", i, err)
			}
			m, p = fragPayload(t, f)
			if _, _, _, err := r.Add(res, m.Raw, p); err != nil {
				t.Fatalf("genuine fragment %d after a forged one: %v", i, err)
			}
		}
	})
	t.Run("invalid numbers", func(t *testing.T) {
		var r Reassembler
		for _, nums := range [][4]byte{{0, 0, 0, 2}, {0, 1, 0, 0}, {0, 3, 0, 2}} {
			c := append([]byte{}, big[0]...)
			copy(c[32:36], nums[:])
			m, p := fragPayload(t, c)
			if _, _, _, err := r.Add(res, m.Raw, p); !errors.Is(err, ErrFragmentDropped) {
				t.Fatalf("numbers %x: %v", nums, err)
			}
		}
	})
	t.Run("limits", func(t *testing.T) {
		r := Reassembler{MaxFragments: len(small) - 1}
		m, p := fragPayload(t, small[0])
		if _, _, _, err := r.Add(res, m.Raw, p); !errors.Is(err, ErrReassemblyLimit) {
			t.Fatalf("too many fragments: %v", err)
		}
		r = Reassembler{MaxBytes: 1000}
		var lastErr error
		for _, f := range big {
			m, p := fragPayload(t, f)
			if _, _, _, lastErr = r.Add(res, m.Raw, p); lastErr != nil {
				break
			}
		}
		if !errors.Is(lastErr, ErrReassemblyLimit) {
			t.Fatalf("too many octets: %v", lastErr)
		}
	})
	t.Run("too small a datagram", func(t *testing.T) {
		if _, _, err := ini.SealFragments(nil, nil, h, wire.PayloadVendor, inner, 60); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("maxLen 60: %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	s := suite{"", mustEncr(f, wire.ENCR_AES_GCM_16, 256), nil}
	cbc := suite{"", mustEncr(f, wire.ENCR_AES_CBC, 128), mustInteg(f, wire.AUTH_HMAC_SHA1_96)}
	ini, res, _ := pair(f, s)
	cini, cres, _ := pair(f, cbc)
	for _, n := range []int{0, 13, 200} {
		inner := []byte{}
		if n > 0 {
			inner = innerChain(n)
		}
		m, _ := ini.Seal(nil, testHeader(false), wire.PayloadVendor, inner)
		f.Add(m)
		m, _ = cini.Seal(nil, testHeader(false), wire.PayloadVendor, inner)
		f.Add(m)
		_, frags, _ := ini.SealFragments(nil, nil, testHeader(false), wire.PayloadVendor, inner, 120)
		f.Add(frags[0])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 40))
	var r Reassembler
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any octets sealed as an inner chain open to themselves.
		if len(data) < 4096 {
			for _, p := range [][2]*SK{{ini, res}, {cini, cres}} {
				msg, err := p[0].Seal(nil, testHeader(false), wire.PayloadNotify, data)
				if err != nil {
					t.Fatal(err)
				}
				pt, first, err := p[1].Open(nil, msg, wire.Payload{Type: wire.PayloadSK, Next: wire.PayloadType(msg[28]), Body: msg[32:]})
				if err != nil || first != wire.PayloadNotify || !bytes.Equal(pt, data) {
					t.Fatalf("round trip: %v", err)
				}
			}
		}
		var m wire.Message
		if m.Parse(data) != nil {
			// Open must also survive a view it did not get from Parse.
			if len(data) >= 32 {
				p := wire.Payload{Type: wire.PayloadSK, Body: data[32:]}
				res.Open(nil, data, p)
				cres.Open(nil, data, p)
			}
			return
		}
		if p, ok := m.Find(wire.PayloadSK); ok {
			for _, sk := range []*SK{res, cres} {
				pt, first, err := sk.Open(nil, m.Raw, p)
				if err == nil {
					wire.ParseChain(nil, first, pt)
				}
			}
		}
		if p, ok := m.Find(wire.PayloadSKF); ok {
			r.Add(res, m.Raw, p)
			r.Add(cres, m.Raw, p)
		}
	})
}

// TestChaCha20Poly1305KnownAnswer is the IKEv2 example of RFC 7634
// Appendix B: an INFORMATIONAL request with a SET_WINDOW_SIZE notify,
// key 0x80..0x9f, salt a0a1a2a3, IV 1011121314151617.
func TestChaCha20Poly1305KnownAnswer(t *testing.T) {
	key := make([]byte, 0, 36)
	for b := 0x80; b <= 0x9f; b++ {
		key = append(key, byte(b))
	}
	key = append(key, 0xa0, 0xa1, 0xa2, 0xa3)
	notify := hexFields(t, "00 00 00 0c 00 00 40 01 00 00 00 0a")
	want := hexFields(t, `
		c0 c1 c2 c3 c4 c5 c6 c7 d0 d1 d2 d3 d4 d5 d6 d7
		2e 20 25 00 00 00 00 09 00 00 00 45 29 00 00 29
		10 11 12 13 14 15 16 17 61 03 94 70 1f 8d 01 7f
		7c 12 92 48 89 6b 71 bf e2 52 36 ef d7 cd c6 70
		66 90 63 15 b2`)
	encr := mustEncr(t, wire.ENCR_CHACHA20_POLY1305, 0)
	// The I flag is clear: the original responder sends, with SK_er.
	keys := &IKEKeys{Ei: make([]byte, 36), Er: key}
	res, err := NewSK(encr, nil, keys, false)
	if err != nil {
		t.Fatal(err)
	}
	res.AdvanceIV(0x1011121314151617)
	h := wire.Header{SPIi: 0xc0c1c2c3c4c5c6c7, SPIr: 0xd0d1d2d3d4d5d6d7, Exchange: wire.INFORMATIONAL, MessageID: 9}
	got, err := res.Seal(nil, h, wire.PayloadNotify, notify)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("sealed\n got %x\nwant %x", got, want)
	}
	ini, err := NewSK(encr, nil, keys, true)
	if err != nil {
		t.Fatal(err)
	}
	m, p := parseSK(t, want)
	pt, first, err := ini.Open(nil, m.Raw, p)
	if err != nil || first != wire.PayloadNotify || !bytes.Equal(pt, notify) {
		t.Fatalf("Open: %v, %v %x", err, first, pt)
	}
}

func hexFields(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkNewSK reports what an IKE SA's SK protection costs to set up;
// B/op approximates the memory it keeps for the SA's lifetime.
func BenchmarkNewSK(b *testing.B) {
	for _, s := range []suite{
		{"AES-GCM-16-256", mustEncr(b, wire.ENCR_AES_GCM_16, 256), nil},
		{"ChaCha20-Poly1305", mustEncr(b, wire.ENCR_CHACHA20_POLY1305, 0), nil},
		{"AES-CBC-256-HMAC-SHA2-256-128", mustEncr(b, wire.ENCR_AES_CBC, 256), mustInteg(b, wire.AUTH_HMAC_SHA2_256_128)},
	} {
		b.Run(s.name, func(b *testing.B) {
			k := testKeys(s, 1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewSK(s.encr, s.integ, k, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSKWithDerivedKeys wires SK to the keys NewIKEKeys derives, for every
// suite, and checks that SK keeps working after the keys are zeroed: it
// must hold its own key schedules, not the caller's slices.
func TestSKWithDerivedKeys(t *testing.T) {
	prf, _ := LookupPRF(wire.PRF_HMAC_SHA2_256)
	gir := bytes.Repeat([]byte{0x42}, 32)
	ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	for _, s := range suites(t) {
		t.Run(s.name, func(t *testing.T) {
			k, err := NewIKEKeys(prf, s.encr, s.integ, gir, ni, nr, 0x1111, 0x2222)
			if err != nil {
				t.Fatal(err)
			}
			ini, err := NewSK(s.encr, s.integ, k, true)
			if err != nil {
				t.Fatal(err)
			}
			res, err := NewSK(s.encr, s.integ, k, false)
			if err != nil {
				t.Fatal(err)
			}
			k.Zero()
			inner := innerChain(50)
			for _, d := range [][2]*SK{{ini, res}, {res, ini}} {
				msg, err := d[0].Seal(nil, testHeader(d[0] == res), wire.PayloadVendor, inner)
				if err != nil {
					t.Fatal(err)
				}
				m, p := parseSK(t, msg)
				if pt, _, err := d[1].Open(nil, m.Raw, p); err != nil || !bytes.Equal(pt, inner) {
					t.Fatalf("after Zero: %v", err)
				}
			}
		})
	}
}
