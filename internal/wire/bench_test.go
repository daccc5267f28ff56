package wire

import "testing"

// The inner (plaintext) chain of a typical IKE_AUTH request: IDi, PSK AUTH,
// N(INITIAL_CONTACT), N(16420), N(16421), CP request, SA with two ESP
// proposals, TSi, TSr.
func BenchmarkIKEAuthParse(b *testing.B) {
	first, chain := ikeAuthInner(nil)
	var (
		ps    [16]Payload
		props [4]Proposal
		attrs [8]CPAttribute
		tsi   [4]TrafficSelector
		tsr   [4]TrafficSelector
	)
	b.SetBytes(int64(len(chain)))
	b.ReportAllocs()
	for b.Loop() {
		pl, err := ParseChain(ps[:0], first, chain)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range pl {
			switch p.Type {
			case PayloadIDi:
				_, err = ParseID(p.Type, p.Body)
			case PayloadAUTH:
				_, err = ParseAuth(p.Body)
			case PayloadNotify:
				_, err = ParseNotify(p.Body)
			case PayloadCP:
				_, err = ParseCP(attrs[:0], p.Body)
			case PayloadSA:
				_, err = ParseSA(props[:0], p.Body)
			case PayloadTSi:
				_, err = ParseTS(tsi[:0], p.Type, p.Body)
			case PayloadTSr:
				_, err = ParseTS(tsr[:0], p.Type, p.Body)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkIKEAuthAppend(b *testing.B) {
	buf := make([]byte, 0, 1024)
	var w Builder
	b.ReportAllocs()
	for b.Loop() {
		w.ResetChain(buf[:0])
		appendIKEAuthInner(&w)
		buf = w.Finish()
	}
	b.SetBytes(int64(len(buf)))
}

// A DPD request or response: header and an empty SK payload (here with a
// 16-octet IV, one block of padding and a 16-octet ICV as AES-GCM leaves).
func BenchmarkDPDParse(b *testing.B) {
	msg := dpdRequest()
	var m Message
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Parse(msg); err != nil {
			b.Fatal(err)
		}
		if _, ok, err := m.Encrypted(); !ok || err != nil {
			b.Fatal("no SK")
		}
	}
}

func BenchmarkDPDAppend(b *testing.B) {
	buf := make([]byte, 0, 128)
	h := Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, Flags: FlagResponse, MessageID: 5}
	var w Builder
	var sealed [32]byte
	b.ReportAllocs()
	for b.Loop() {
		w.Reset(buf[:0], h)
		w.End(append(w.StartSK(PayloadNone), sealed[:]...))
		buf = w.Finish()
	}
}
