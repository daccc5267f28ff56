package esp

import (
	"fmt"
	"testing"
)

const benchPacket = 1400

func benchAlgs() []alg {
	return []alg{algs[2], algs[3], {"AES-CBC-256/HMAC-SHA2-256-128", EncrAESCBC, 32, IntegHMACSHA2_256128, 32}}
}

func BenchmarkSeal(b *testing.B) {
	for _, a := range benchAlgs() {
		b.Run(fmt.Sprintf("%s/%d", a.name, benchPacket), func(b *testing.B) {
			out := mustSA(b, a.config(Outbound, true))
			inner := innerPacket(benchPacket)
			buf := make([]byte, 0, out.SealedLen(benchPacket))
			b.SetBytes(benchPacket)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := out.Seal(buf, inner, 4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, a := range benchAlgs() {
		b.Run(fmt.Sprintf("%s/%d", a.name, benchPacket), func(b *testing.B) {
			out, in := pair(b, a, true)
			// A pool of distinct packets; the window is reset whenever the
			// pool has been used up, outside the timed region.
			pkts := make([][]byte, 4096)
			for i := range pkts {
				pkts[i], _ = out.Seal(nil, innerPacket(benchPacket), 4)
			}
			dst := make([]byte, 0, 2048)
			b.SetBytes(benchPacket)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(pkts) {
					b.StopTimer()
					clear(in.win.ring)
					in.win.top = 0
					i = 0
					b.StartTimer()
				}
				if _, _, err := in.Open(dst, pkts[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
