package crypto

import (
	"bytes"
	"runtime"
	"testing"
	"unsafe"

	"github.com/hike-vpn/hike/internal/wire"
)

// retainedPerSA returns how many heap octets n results of build keep alive,
// per result, after a collection. Unlike B/op this leaves out temporaries
// (the AES key schedule that cipher.NewGCM copies, prf+ scratch) and counts
// only what an idle IKE SA keeps, rounded to Go's size classes.
func retainedPerSA(tb testing.TB, n int, build func() any) float64 {
	tb.Helper()
	keep := make([]any, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = build()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// footprintSuites are the suites whose per-SA memory BenchmarkSAFootprint
// reports, with the PRF hike negotiates with each by default.
func footprintSuites(tb testing.TB) []suite {
	return []suite{
		{"AES-GCM-16-256", mustEncr(tb, wire.ENCR_AES_GCM_16, 256), nil},
		{"ChaCha20-Poly1305", mustEncr(tb, wire.ENCR_CHACHA20_POLY1305, 0), nil},
		{"AES-CBC-256-HMAC-SHA2-256-128", mustEncr(tb, wire.ENCR_AES_CBC, 256), mustInteg(tb, wire.AUTH_HMAC_SHA2_256_128)},
	}
}

// BenchmarkSAFootprint reports the heap an IKE SA keeps for its keys
// (NewIKEKeys with PRF-HMAC-SHA2-256) and its SK protection (NewSK), in
// octets per SA: the figures behind the memory budget of 60,000 SAs per
// cluster member (docs/benchmarks.md). sk-B/SA includes the ciphers' own
// state, for AES-GCM two cipher.AEAD from crypto/cipher.
func BenchmarkSAFootprint(b *testing.B) {
	prf, err := LookupPRF(wire.PRF_HMAC_SHA2_256)
	if err != nil {
		b.Fatal(err)
	}
	gir := bytes.Repeat([]byte{0x42}, 32)
	ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	const n = 4096
	for _, s := range footprintSuites(b) {
		b.Run(s.name, func(b *testing.B) {
			k, err := NewIKEKeys(prf, s.encr, s.integ, gir, ni, nr, 1, 2)
			if err != nil {
				b.Fatal(err)
			}
			var keysB, skB float64
			for b.Loop() {
				keysB = retainedPerSA(b, n, func() any {
					k, err := NewIKEKeys(prf, s.encr, s.integ, gir, ni, nr, 1, 2)
					if err != nil {
						b.Fatal(err)
					}
					return k
				})
				skB = retainedPerSA(b, n, func() any {
					sk, err := NewSK(s.encr, s.integ, k, true)
					if err != nil {
						b.Fatal(err)
					}
					return sk
				})
			}
			b.ReportMetric(keysB, "keys-B/SA")
			b.ReportMetric(skB, "sk-B/SA")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestSKFootprint holds NewSK to the memory budget of an AEAD SA: no CBC or
// HMAC state, and an SK struct of 96 octets (a size class of its own; 352
// before the CBC state moved out). ChaCha20-Poly1305 is measured on the heap
// because its cipher state is a 32-octet key: what it keeps is nearly all
// SK, unlike AES-GCM, whose two cipher.AEAD from crypto/cipher dominate.
func TestSKFootprint(t *testing.T) {
	if n := unsafe.Sizeof(SK{}); n > 96 {
		t.Errorf("SK is %d octets, want ≤ 96", n)
	}
	// Seven slice headers and nothing else.
	if n, want := unsafe.Sizeof(IKEKeys{}), 7*unsafe.Sizeof([]byte(nil)); n != want {
		t.Errorf("IKEKeys is %d octets, want %d", n, want)
	}
	for _, s := range suites(t) {
		ini, _, _ := pair(t, s)
		if (ini.cbc == nil) != s.encr.AEAD() {
			t.Errorf("%s: CBC state allocated = %v, want %v", s.name, ini.cbc != nil, !s.encr.AEAD())
		}
	}
	s := suite{"ChaCha20-Poly1305", mustEncr(t, wire.ENCR_CHACHA20_POLY1305, 0), nil}
	k := testKeys(s, 1)
	got := retainedPerSA(t, 4096, func() any {
		sk, err := NewSK(s.encr, s.integ, k, true)
		if err != nil {
			t.Fatal(err)
		}
		return sk
	})
	// 96 for the SK and 2 × 32 for the keyed ChaCha20-Poly1305, with room
	// for a few stray allocations by the runtime while measuring.
	if got > 192 {
		t.Errorf("a ChaCha20-Poly1305 SK keeps %.0f octets, want ≤ 192", got)
	}
	t.Logf("ChaCha20-Poly1305 SK keeps %.0f octets", got)
}
