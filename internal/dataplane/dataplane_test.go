package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{"": KindAuto, "auto": KindAuto, " XFRM ": KindXFRM, "userspace": KindUserspace} {
		got, err := ParseKind(in)
		if err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseKind("kernel"); err == nil {
		t.Error("ParseKind(kernel) accepted an unknown kind")
	}
}

func TestSelect(t *testing.T) {
	noESP := fmt.Errorf("%w: adding a test SA: protocol not supported", ErrNoKernelESP)
	calls := 0
	probeOK := func() error { calls++; return nil }
	probeFail := func() error { calls++; return noESP }

	s, err := Select(KindAuto, probeOK)
	if err != nil || s.Kind != KindXFRM {
		t.Fatalf("auto with ESP = %+v, %v; want xfrm", s, err)
	}
	s, err = Select(KindAuto, probeFail)
	if err != nil || s.Kind != KindUserspace || !strings.Contains(s.Reason, "ESP") {
		t.Fatalf("auto without ESP = %+v, %v; want userspace with a reason naming ESP", s, err)
	}
	_, err = Select(KindXFRM, probeFail)
	if err == nil || !errors.Is(err, ErrNoKernelESP) {
		t.Fatalf("xfrm without ESP: err = %v; want ErrNoKernelESP", err)
	}
	for _, part := range []string{"xfrm data plane unavailable", "CONFIG_INET_ESP", "protocol not supported", "use dataplane: userspace"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	before := calls
	s, err = Select(KindUserspace, probeFail)
	if err != nil || s.Kind != KindUserspace || calls != before {
		t.Fatalf("userspace = %+v, %v, probed %d times; want userspace without probing", s, err, calls-before)
	}
	if _, err := Select(KindXFRM, nil); err == nil {
		t.Fatal("xfrm without a probe accepted")
	}
	if _, err := Select("bogus", probeOK); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

func TestAlgorithmKeyLen(t *testing.T) {
	// Key sizes: RFC 3602 (AES-CBC), RFC 4106 §8.1 (GCM key + 4-octet salt),
	// RFC 7634 §2 (ChaCha20 key + salt), RFC 2404 / RFC 4868 §2.1.2 (HMAC keys
	// as long as the hash output).
	cases := []struct {
		alg          Algorithm
		encr, integ  int
		wantErrSubst string
	}{
		{Algorithm{Encr: EncrAESGCM16, EncrKeyBits: 128}, 20, 0, ""},
		{Algorithm{Encr: EncrAESGCM16, EncrKeyBits: 256}, 36, 0, ""},
		{Algorithm{Encr: EncrChaCha20Poly1305}, 36, 0, ""},
		{Algorithm{Encr: EncrAESCBC, EncrKeyBits: 128, Integ: IntegHMACSHA1_96}, 16, 20, ""},
		{Algorithm{Encr: EncrAESCBC, EncrKeyBits: 192, Integ: IntegHMACSHA2_256_128}, 24, 32, ""},
		{Algorithm{Encr: EncrAESCBC, EncrKeyBits: 256, Integ: IntegHMACSHA2_384_192}, 32, 48, ""},
		{Algorithm{Encr: EncrAESCBC, EncrKeyBits: 256, Integ: IntegHMACSHA2_512_256}, 32, 64, ""},
		{Algorithm{Encr: EncrAESCBC, EncrKeyBits: 128}, 0, 0, "needs an INTEG"},
		{Algorithm{Encr: EncrAESGCM16, EncrKeyBits: 128, Integ: IntegHMACSHA1_96}, 0, 0, "AEAD"},
		{Algorithm{Encr: EncrAESGCM16, EncrKeyBits: 100}, 0, 0, "key length"},
		{Algorithm{Encr: 3}, 0, 0, "unsupported ENCR"},
		{Algorithm{Encr: EncrAESCBC, EncrKeyBits: 128, Integ: 5}, 0, 0, "unsupported INTEG"},
	}
	for _, c := range cases {
		e, i, err := c.alg.KeyLen()
		if c.wantErrSubst != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErrSubst) {
				t.Errorf("%+v: err = %v, want one containing %q", c.alg, err, c.wantErrSubst)
			}
			continue
		}
		if err != nil || e != c.encr || i != c.integ {
			t.Errorf("%+v: KeyLen = %d, %d, %v; want %d, %d", c.alg, e, i, err, c.encr, c.integ)
		}
	}
}

func TestSAValidate(t *testing.T) {
	good := SA{
		ID:      SAID{SPI: 1, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")},
		Alg:     Algorithm{Encr: EncrAESGCM16, EncrKeyBits: 128},
		EncrKey: make([]byte, 20),
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid SA rejected: %v", err)
	}
	mutations := map[string]func(*SA){
		"spi0":  func(s *SA) { s.ID.SPI = 0 },
		"mixed": func(s *SA) { s.ID.Dst = netip.MustParseAddr("2001:db8::1") },
		"mapped": func(s *SA) {
			s.ID.Dst = netip.MustParseAddr("::ffff:192.0.2.2")
			s.ID.Src = netip.MustParseAddr("::ffff:192.0.2.1")
		},
		"short key":   func(s *SA) { s.EncrKey = s.EncrKey[:16] },
		"extra integ": func(s *SA) { s.IntegKey = make([]byte, 20) },
		"encap port":  func(s *SA) { s.Encap = &UDPEncap{SrcPort: 4500} },
	}
	for name, mut := range mutations {
		sa := good
		mut(&sa)
		if err := sa.Validate(); err == nil {
			t.Errorf("%s: invalid SA accepted", name)
		}
	}
}

func TestPrefixSelector(t *testing.T) {
	ts := PrefixSelector(netip.MustParsePrefix("10.1.2.3/23"))
	if ts.Start != netip.MustParseAddr("10.1.2.0") || ts.End != netip.MustParseAddr("10.1.3.255") || ts.EndPort != 0xffff || ts.Proto != 0 {
		t.Fatalf("PrefixSelector(10.1.2.3/23) = %s", ts)
	}
	ts = PrefixSelector(netip.MustParsePrefix("2001:db8::/127"))
	if ts.End != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("PrefixSelector(2001:db8::/127) = %s", ts)
	}
	if err := (TrafficSelector{Start: netip.MustParseAddr("10.0.0.2"), End: netip.MustParseAddr("10.0.0.1")}).Validate(); err == nil {
		t.Fatal("reversed range accepted")
	}
}
