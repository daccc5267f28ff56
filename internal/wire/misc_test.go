package wire

import (
	"bytes"
	"net/netip"
	"testing"
)

// Public value sizes: RFC 3526 (MODP primes of 2048/3072/4096 bits), RFC
// 5903 §7 (x || y of 256/384/528 bits), RFC 8031 §3.1 (32 and 56 octets).
func TestKEGroupLengths(t *testing.T) {
	for group, n := range map[uint16]int{
		DH_MODP_2048: 256, DH_MODP_3072: 384, DH_MODP_4096: 512,
		DH_ECP_256: 64, DH_ECP_384: 96, DH_ECP_521: 132,
		DH_CURVE25519: 32, DH_CURVE448: 56,
	} {
		body := append([]byte{byte(group >> 8), byte(group), 0, 0}, make([]byte, n)...)
		if _, err := ParseKE(body); err != nil {
			t.Errorf("group %d with %d octets: %v", group, n, err)
		}
		_, err := ParseKE(body[:len(body)-1])
		wantSyntax(t, "group "+itoa(uint64(group))+" short", err, PayloadKE)
	}
	// Groups hike does not implement are not the parser's to judge.
	if _, err := ParseKE([]byte{0, 2, 0, 0, 1}); err != nil {
		t.Errorf("group 2: %v", err)
	}
}

func TestNamesAndHelpers(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{IKE_AUTH.String(), "IKE_AUTH"},
		{ExchangeType(99).String(), "EXCHANGE(99)"},
		{PayloadSKF.String(), "SKF"},
		{PayloadTSr.String(), "TSr"},
		{PayloadNone.String(), "none"},
		{PayloadType(50).String(), "PAYLOAD(50)"},
		{IKEV2_MESSAGE_ID_SYNC.String(), "IKEV2_MESSAGE_ID_SYNC"},
		{NotifyType(12345).String(), "NOTIFY(12345)"},
		{(&Error{Notify: INVALID_SYNTAX, Payload: PayloadSA, Reason: "x"}).Error(), "wire: SA: x"},
		{(&Error{Notify: INVALID_SYNTAX, Reason: "y"}).Error(), "wire: y"},
		{(&Error{Notify: UNSUPPORTED_CRITICAL_PAYLOAD, Payload: 200}).Error(), "wire: unsupported critical payload PAYLOAD(200)"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if !INVALID_SYNTAX.IsError() || INITIAL_CONTACT.IsError() {
		t.Error("IsError")
	}
	if (&Error{Notify: INVALID_SYNTAX}).NotifyData() != nil {
		t.Error("INVALID_SYNTAX carries no data")
	}

	var w Builder
	w.Reset(nil, Header{Exchange: INFORMATIONAL})
	w.AddNonce(make([]byte, 16))
	w.AddVendorID([]byte("v"))
	if w.Len() != HeaderLen+4+16+4+1 {
		t.Errorf("Len = %d", w.Len())
	}
	var m Message
	if err := m.Parse(w.Finish()); err != nil {
		t.Fatal(err)
	}
	if p, ok := m.Find(PayloadVendor); !ok || !bytes.Equal(p.Body, []byte("v")) {
		t.Errorf("Find V: %+v %v", p, ok)
	}
	if _, ok := m.Find(PayloadSA); ok {
		t.Error("Find SA in a message without one")
	}
	w.ResetChain([]byte{0xff})
	w.End(append(w.Start(PayloadVendor, true), 1))
	if got := w.Finish(); !bytes.Equal(got, []byte{0xff, 0, 0x80, 0, 5, 1}) || w.Len() != 6 {
		t.Errorf("critical bare chain: %x", got)
	}
}

// A selector's addresses are written in the selector type's family; a
// caller's mismatch degrades to the unspecified address instead of
// panicking, and IPv4-mapped IPv6 addresses fit an IPv4 range.
func TestAppendTSAddressFamilies(t *testing.T) {
	ts := []TrafficSelector{
		{Type: TS_IPV4_ADDR_RANGE, Start: netip.MustParseAddr("::ffff:10.0.0.1"), End: netip.MustParseAddr("2001:db8::1")},
		{Type: TS_IPV6_ADDR_RANGE, Start: netip.MustParseAddr("10.0.0.1"), End: netip.Addr{}},
	}
	got, err := ParseTS(nil, PayloadTSi, AppendTS(nil, ts))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Start != netip.MustParseAddr("10.0.0.1") || got[0].End != netip.IPv4Unspecified() ||
		got[1].Start != netip.IPv6Unspecified() || got[1].End != netip.IPv6Unspecified() {
		t.Fatalf("got %+v", got)
	}
}
