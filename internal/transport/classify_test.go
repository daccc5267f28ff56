package transport

import (
	"bytes"
	"testing"
)

// ikeHeader is a minimal IKE_SA_INIT request header (RFC 7296 §3.1): a
// non-zero initiator SPI, zero responder SPI, Next Payload SA (33), version
// 2.0, exchange IKE_SA_INIT (34), flags Initiator (0x08), message ID 0,
// length 28.
var ikeHeader = []byte{
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0, 0, 0, 0, 0, 0, 0, 0,
	33, 0x20, 34, 0x08,
	0, 0, 0, 0,
	0, 0, 0, 28,
}

func withMarker(b []byte) []byte { return append([]byte{0, 0, 0, 0}, b...) }

func TestClassify(t *testing.T) {
	esp := []byte{0x00, 0x00, 0x10, 0x01, 0, 0, 0, 1, 0xAA, 0xBB} // SPI 0x1001, seq 1
	tests := []struct {
		name  string
		in    []byte
		encap bool
		kind  Kind
		out   []byte
	}{
		{"ike on 500", ikeHeader, false, KindIKE, ikeHeader},
		// On port 500 a leading zero word is part of the message (an
		// invalid zero SPIi), not a marker: RFC 3948 markers exist only
		// on the NAT-T port.
		{"zeros on 500 not stripped", withMarker(ikeHeader), false, KindIKE, withMarker(ikeHeader)},
		{"runt ike on 500", ikeHeader[:27], false, KindInvalid, nil},
		{"keepalive on 500 is a runt", []byte{0xFF}, false, KindInvalid, nil},
		{"empty on 500", nil, false, KindInvalid, nil},
		{"ike on 4500", withMarker(ikeHeader), true, KindIKE, ikeHeader},
		{"runt ike on 4500", withMarker(ikeHeader[:27]), true, KindInvalid, nil},
		{"marker only", []byte{0, 0, 0, 0}, true, KindInvalid, nil},
		{"esp on 4500", esp, true, KindESP, esp},
		{"esp header only", esp[:8], true, KindESP, esp[:8]},
		{"runt esp", esp[:7], true, KindInvalid, nil},
		// RFC 3948 §2.3: a keepalive is a single octet 0xFF.
		{"keepalive", []byte{0xFF}, true, KindKeepalive, nil},
		{"two 0xFF octets", []byte{0xFF, 0xFF}, true, KindInvalid, nil},
		{"one zero octet", []byte{0}, true, KindInvalid, nil},
		{"empty on 4500", nil, true, KindInvalid, nil},
		{"three octets", []byte{1, 2, 3}, true, KindInvalid, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, out := Classify(tc.in, tc.encap)
			if kind != tc.kind || !bytes.Equal(out, tc.out) || (tc.out == nil) != (out == nil) {
				t.Fatalf("Classify(%x, %v) = %v, %x; want %v, %x", tc.in, tc.encap, kind, out, tc.kind, tc.out)
			}
		})
	}
}

func TestClassifyDoesNotCopy(t *testing.T) {
	in := withMarker(ikeHeader)
	_, out := Classify(in, true)
	if &out[0] != &in[NonESPMarkerLen] {
		t.Fatal("IKE message is not a subslice of the datagram")
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(ikeHeader, false)
	f.Add(withMarker(ikeHeader), true)
	f.Add([]byte{0xFF}, true)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 1}, true)
	f.Add([]byte{0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, b []byte, encap bool) {
		kind, out := Classify(b, encap)
		switch kind {
		case KindIKE:
			if !encap {
				if len(out) != len(b) || len(b) < IKEHeaderLen {
					t.Fatalf("IKE on 500: got %d of %d octets", len(out), len(b))
				}
				return
			}
			if len(b) < NonESPMarkerLen+IKEHeaderLen || !bytes.Equal(b[:4], []byte{0, 0, 0, 0}) ||
				!bytes.Equal(out, b[NonESPMarkerLen:]) {
				t.Fatalf("IKE on 4500 from %x: %x", b, out)
			}
		case KindESP:
			if !encap || len(b) < MinESPLen || bytes.Equal(b[:4], []byte{0, 0, 0, 0}) || !bytes.Equal(out, b) {
				t.Fatalf("ESP from %x (encap %v): %x", b, encap, out)
			}
		case KindKeepalive:
			if !encap || !bytes.Equal(b, []byte{0xFF}) || out != nil {
				t.Fatalf("keepalive from %x (encap %v)", b, encap)
			}
		case KindInvalid:
			if out != nil {
				t.Fatalf("invalid datagram %x returned data", b)
			}
		default:
			t.Fatalf("unknown kind %v", kind)
		}
		// Marker handling round-trips: whatever the NAT-T port delivers
		// as IKE, prefixed with the marker, classifies back to itself.
		if kind == KindIKE {
			k2, out2 := Classify(withMarker(out), true)
			if k2 != KindIKE || !bytes.Equal(out2, out) {
				t.Fatalf("marker round trip of %x: %v %x", out, k2, out2)
			}
		}
	})
}
