package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// saRequestOctets is an SA payload body assembled by hand from the layout in
// RFC 7296 §3.3.1-§3.3.5: proposal 1 for IKE with ENCR_AES_GCM_16 (key
// length 256 as a TV attribute), PRF_HMAC_SHA2_256 and DH 31; proposal 2 for
// IKE with ENCR_AES_CBC-128, PRF_HMAC_SHA2_256, AUTH_HMAC_SHA2_256_128 and
// DH 19.
const saRequestOctets = `
02 00 00 24 01 01 00 03
  03 00 00 0c 01 00 00 14 80 0e 01 00
  03 00 00 08 02 00 00 05
  00 00 00 08 04 00 00 1f
00 00 00 2c 02 01 00 04
  03 00 00 0c 01 00 00 0c 80 0e 00 80
  03 00 00 08 02 00 00 05
  03 00 00 08 03 00 00 0c
  00 00 00 08 04 00 00 13`

func TestParseSAHandAssembled(t *testing.T) {
	body := hexBytes(t, saRequestOctets)
	ps, err := ParseSA(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	want := []Proposal{
		{Num: 1, Protocol: ProtoIKE, SPI: []byte{}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLen: 256},
			{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
			{Type: TransformDH, ID: DH_CURVE25519},
		}},
		{Num: 2, Protocol: ProtoIKE, SPI: []byte{}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_CBC, KeyLen: 128},
			{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
			{Type: TransformINTEG, ID: AUTH_HMAC_SHA2_256_128},
			{Type: TransformDH, ID: DH_ECP_256},
		}},
	}
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("got %+v\nwant %+v", ps, want)
	}
	if got := AppendSA(nil, want); !bytes.Equal(got, body) {
		t.Fatalf("AppendSA:\n got %x\nwant %x", got, body)
	}
}

func TestSARoundTrip(t *testing.T) {
	in := []Proposal{
		{Num: 1, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLen: 128},
			{Type: TransformESN, ID: ESN_NO},
		}},
		{Num: 2, Protocol: ProtoESP, SPI: []byte{5, 6, 7, 8}, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_CHACHA20_POLY1305},
			{Type: TransformESN, ID: ESN_YES},
		}},
		{Num: 3, Protocol: ProtoIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Transforms: []Transform{
			{Type: TransformDH, ID: DH_CURVE448},
		}},
	}
	var w Builder
	w.ResetChain(nil)
	w.AddSA(in)
	chain := w.Finish()
	ps, err := ParseChain(nil, w.First(), chain)
	if err != nil || len(ps) != 1 || ps[0].Type != PayloadSA {
		t.Fatalf("chain: %v %+v", err, ps)
	}
	got, err := ParseSA(make([]Proposal, 0, 4), ps[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("got %+v\nwant %+v", got, in)
	}
	// The transform slices are capped: appending to one must not clobber
	// the next proposal's transforms.
	_ = append(got[0].Transforms, Transform{Type: 99})
	if got[1].Transforms[0].ID != ENCR_CHACHA20_POLY1305 {
		t.Fatal("append through a proposal's transforms overwrote the next proposal")
	}
}

func TestParseSAUnknownAttributes(t *testing.T) {
	// A TV attribute of unknown type 5, a TLV attribute of unknown type 6
	// with 3 octets of value, and a zero Key Length each parse but mark the
	// transform unsupported (RFC 7296 §3.3.6 rejects the proposal).
	for name, attr := range map[string]string{
		"unknown TV":  "80 05 00 01",
		"unknown TLV": "00 06 00 03 aa bb cc",
		"zero keylen": "80 0e 00 00",
	} {
		a := hexBytes(t, attr)
		tr := append([]byte{0, 0, 0, byte(8 + len(a)), 1, 0, 0, 12}, a...)
		body := append([]byte{0, 0, 0, byte(8 + len(tr)), 1, 1, 0, 1}, tr...)
		ps, err := ParseSA(nil, body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !ps[0].Transforms[0].Unsupported {
			t.Errorf("%s: transform not marked unsupported", name)
		}
	}
}

func TestParseSAMalformed(t *testing.T) {
	// Each case edits the valid two-proposal body of saRequestOctets. Offsets:
	// proposal 1 at 0 (transforms at 8, 20, 28), proposal 2 at 36.
	cases := map[string]func(b []byte) []byte{
		"empty":                     func(b []byte) []byte { return b[:0] },
		"truncated proposal":        func(b []byte) []byte { return b[:5] },
		"proposal length short":     func(b []byte) []byte { b[3] = 7; return b },
		"proposal length long":      func(b []byte) []byte { b[3] = 0xff; return b },
		"proposal last marker 3":    func(b []byte) []byte { b[0] = 3; return b },
		"first marked last":         func(b []byte) []byte { b[0] = 0; return b },
		"last marked more":          func(b []byte) []byte { b[36] = 2; return b },
		"trailing octets":           func(b []byte) []byte { return append(b, 0) },
		"proposal number zero":      func(b []byte) []byte { b[4] = 0; b[40] = 1; return b },
		"proposal number repeated":  func(b []byte) []byte { b[40] = 1; return b },
		"proposal number skipped":   func(b []byte) []byte { b[40] = 3; return b },
		"IKE SPI size 4":            func(b []byte) []byte { return withSPI(b, 4) },
		"ESP SPI size 0":            func(b []byte) []byte { b[5] = byte(ProtoESP); return b },
		"ESP SPI size 8":            func(b []byte) []byte { b = withSPI(b, 8); b[5] = byte(ProtoESP); return b },
		"no transforms":             func(b []byte) []byte { b[7] = 0; return b },
		"more transforms than fit":  func(b []byte) []byte { b[7] = 4; return b },
		"fewer transforms than fit": func(b []byte) []byte { b[7] = 2; return b },
		"transform length short":    func(b []byte) []byte { b[8+3] = 7; return b },
		"transform length long":     func(b []byte) []byte { b[8+3] = 0x40; return b },
		"transform last marker 2":   func(b []byte) []byte { b[8] = 2; return b },
		"transform marked last":     func(b []byte) []byte { b[20] = 0; return b },
		"truncated attribute":       func(b []byte) []byte { b[8+3] = 10; b[3] -= 2; return cut(b, 18, 2) },
		"key length as TLV":         func(b []byte) []byte { b[8+8] = 0; b[8+10], b[8+11] = 0, 0; return b },
		"TLV attribute out of bounds": func(b []byte) []byte {
			b[8+8] = 0
			b[8+9] = 6
			return b
		},
		"duplicate key length": func(b []byte) []byte {
			b = insert(b, 20, hexBytes(t, "80 0e 00 80"))
			b[8+3] += 4
			b[3] += 4
			return b
		},
	}
	for name, edit := range cases {
		b := edit(hexBytes(t, saRequestOctets))
		_, err := ParseSA(nil, b)
		wantSyntax(t, name, err, PayloadSA)
	}
}

// withSPI inserts an n-octet SPI into the first proposal of an SA body.
func withSPI(b []byte, n int) []byte {
	b = insert(b, 8, make([]byte, n))
	b[6] = byte(n)
	b[3] += byte(n)
	return b
}

func insert(b []byte, at int, x []byte) []byte {
	out := append([]byte(nil), b[:at]...)
	out = append(out, x...)
	return append(out, b[at:]...)
}

func cut(b []byte, at, n int) []byte {
	return append(b[:at:at], b[at+n:]...)
}

// SA parsing is off the hot path but frugal: one allocation for all
// transforms when the caller provides room for the proposals.
func TestParseSAAllocations(t *testing.T) {
	body := hexBytes(t, saRequestOctets)
	var ps [4]Proposal
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseSA(ps[:0], body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("ParseSA allocated %v times, want at most 1", allocs)
	}
}
