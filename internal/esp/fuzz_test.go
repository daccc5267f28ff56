package esp

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzAlgs are the transforms FuzzOpen exercises: both AEADs and CBC with
// the shortest and the longest ICV.
func fuzzAlgs() []alg { return []alg{algs[2], algs[3], algs[4], algs[len(algs)-1]} }

// FuzzOpen feeds arbitrary bytes to Open for every transform, with and
// without ESN and with the window at an arbitrary place. Open must never
// panic, never accept a packet twice, and whatever it accepts must be a
// packet the matching sender could have built.
func FuzzOpen(f *testing.F) {
	for i, a := range fuzzAlgs() {
		for _, esn := range []bool{false, true} {
			out := mustSA(f, a.config(Outbound, esn))
			for _, n := range []int{0, 1, 40, 200} {
				p, err := out.Seal(nil, innerPacket(n), 4)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(uint8(i), esn, uint64(0), p)
			}
			out.SetOutboundSeq(1<<32 - 2)
			p, _ := out.Seal(nil, innerPacket(30), 41)
			f.Add(uint8(i), esn, uint64(1<<32-100), p)
			p, _ = out.Seal(nil, innerPacket(30), 41) // 2^32 with ESN
			f.Add(uint8(i), esn, uint64(1<<32-1), p)
		}
	}
	f.Add(uint8(0), false, uint64(0), []byte{})
	f.Add(uint8(0), false, uint64(0), []byte{0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 1})

	f.Fuzz(func(t *testing.T, algIdx uint8, esn bool, top uint64, pkt []byte) {
		as := fuzzAlgs()
		a := as[int(algIdx)%len(as)]
		in := mustSA(t, a.config(Inbound, esn))
		if top != 0 {
			in.SetReplayState(ReplayState{Top: top, Bitmap: make([]uint64, 3)})
		}
		orig := bytes.Clone(pkt)
		plain, _, err := in.Open(nil, pkt)
		if !bytes.Equal(pkt, orig) {
			t.Fatal("Open modified its input while decrypting into a separate buffer")
		}
		if err != nil {
			if plain != nil {
				t.Fatalf("error %v but %d bytes of output", err, len(plain))
			}
			return
		}
		// Accepted: only the genuine sender's packets can get here.
		if len(plain) > len(pkt) {
			t.Fatalf("plaintext (%d) longer than packet (%d)", len(plain), len(pkt))
		}
		if _, _, err := in.Open(pkt[:0], pkt); !errors.Is(err, ErrReplay) {
			t.Fatalf("accepted packet accepted again: %v", err)
		}
	})
}
