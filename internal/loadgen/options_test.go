package loadgen

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":            "10.0.0.1:500",
		"10.0.0.1:4500":       "10.0.0.1:4500",
		"[2001:db8::1]:500":   "[2001:db8::1]:500",
		"2001:db8::1":         "[2001:db8::1]:500",
		"[::ffff:10.0.0.1]:7": "10.0.0.1:7",
	} {
		got, err := ParseTarget(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "host.example", "10.0.0.1:99999", "10.0.0"} {
		if _, err := ParseTarget(in); err == nil || !strings.Contains(err.Error(), "expected ADDR") {
			t.Errorf("ParseTarget(%q): error %v, want one saying what is expected", in, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"200": 200, "200/s": 200, "0.5/s": 0.5, "6000/min": 100, " 50 ": 50} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "fast", "200/h", "NaN", "Inf/s"} {
		if _, err := ParseRate(in); err == nil || !strings.Contains(err.Error(), "expected") {
			t.Errorf("ParseRate(%q): error %v", in, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "0.25": 250 * time.Millisecond,
		"500ms": 500 * time.Millisecond, "2m": 2 * time.Minute, "0": 0} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-2s", "soon", "5 s"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func TestParseSourcesAndAddrs(t *testing.T) {
	ps, err := ParseSources("10.201.0.0/30, 192.0.2.7,::ffff:10.9.0.0/120")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.201.0.0/30", "192.0.2.7/32", "10.9.0.0/24"}
	if len(ps) != len(want) {
		t.Fatalf("got %v", ps)
	}
	for i := range want {
		if ps[i].String() != want[i] {
			t.Fatalf("prefix %d: %v, want %s", i, ps[i], want[i])
		}
	}
	// A /30 has two hosts; a single address is one; then the /24 from .1.
	got := sourceAddrs(ps, 6)
	wantAddrs := []string{"10.201.0.1", "10.201.0.2", "192.0.2.7", "10.9.0.1", "10.9.0.2", "10.9.0.3"}
	if len(got) != len(wantAddrs) {
		t.Fatalf("addrs %v", got)
	}
	for i := range wantAddrs {
		if got[i].String() != wantAddrs[i] {
			t.Fatalf("addr %d: %v, want %s", i, got[i], wantAddrs[i])
		}
	}
	// A /16 holds 65,534 usable addresses, no more.
	if n := len(sourceAddrs([]netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}, 1<<20)); n != 65534 {
		t.Fatalf("/16 gave %d addresses", n)
	}
	// /31 and IPv6 use every address.
	if n := len(sourceAddrs([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/31"), netip.MustParsePrefix("2001:db8::/126")}, 100)); n != 6 {
		t.Fatalf("/31 + /126 gave %d addresses", n)
	}
	if _, err := ParseSources("10.0.0.0/33"); err == nil || !strings.Contains(err.Error(), "CIDR") {
		t.Fatalf("bad prefix: %v", err)
	}
}

func TestClientID(t *testing.T) {
	for f, want := range map[string]wire.ID{
		"client%d.load":     {Type: wire.ID_FQDN, Data: []byte("client42.load")},
		"u%05d@load.test":   {Type: wire.ID_RFC822_ADDR, Data: []byte("u00042@load.test")},
		"100%%-c%d.example": {Type: wire.ID_FQDN, Data: []byte("100%-c42.example")},
	} {
		got, err := clientID(f, 42)
		if err != nil || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("clientID(%q) = %v %q, %v; want %v %q", f, got.Type, got.Data, err, want.Type, want.Data)
		}
	}
	for _, f := range []string{"client.load", "c%d-%d.load", "c%s.load", "c%v", "%", "c%%d"} {
		if _, err := clientID(f, 1); err == nil || !strings.Contains(err.Error(), "exactly one %d") {
			t.Errorf("clientID(%q): error %v", f, err)
		}
	}
}

func TestValidateSaysWhatIsExpected(t *testing.T) {
	err := (&Options{Clients: 0, Rate: 0, DPD: -time.Second, IDFormat: "x", IKEProposals: []string{"rot13-md4"},
		Target: netip.MustParseAddrPort("10.0.0.1:500"), Sources: []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")}}).Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"clients: at least 1", "rate: a positive number", "dpd: a non-negative",
		"pre-shared key is required", "exactly one %d", "proposal \"rot13-md4\"", "address family"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	ok := Options{Target: netip.MustParseAddrPort("10.0.0.1:500"), Clients: 1, Rate: 1, PSK: []byte("k"),
		IKEProposals: []string{"aes128gcm16-prfsha256-ecp256"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseStatCPU(t *testing.T) {
	// proc(5): utime and stime are fields 14 and 15; the command name may
	// hold spaces and parentheses.
	line := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 3310 0 0 0 250 130 0 0 20 0 9 0 123 1000 200 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil || got != 3.8 {
		t.Fatalf("parseStatCPU = %v, %v; want 3.8 s (380 ticks)", got, err)
	}
	for _, bad := range []string{"", "4242 (x) S 1", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 ab 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

// TestSummaryJSON pins the field names scripts and docs/benchmarks.md
// read.
func TestSummaryJSON(t *testing.T) {
	s := Summary{Target: "10.0.0.1:500", Clients: 5, Established: 4, Failed: 1,
		Failures:     map[string]int64{"retransmissions exhausted": 1},
		SetupRate:    123.5,
		SetupLatency: Latency{Count: 4, P50: 1.5, P99: 3, Max: 3.2},
		DPD:          DPDSummary{Completed: 10, PerSecond: 2.5, RTT: Latency{P50: 0.4, P99: 0.9}},
		ResyncsSeen:  7, CPU: []CPUUsage{{PID: 1, Name: "hike", Seconds: 1.25, Percent: 50}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		var v any = m
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				v = x[0].(map[string]any)[p]
			}
		}
		return v
	}
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"established"}, 4.0},
		{[]string{"failed"}, 1.0},
		{[]string{"failures_by_reason", "retransmissions exhausted"}, 1.0},
		{[]string{"setup_rate_per_s"}, 123.5},
		{[]string{"setup_latency", "p50_ms"}, 1.5},
		{[]string{"setup_latency", "p99_ms"}, 3.0},
		{[]string{"dpd", "per_s"}, 2.5},
		{[]string{"dpd", "rtt", "p99_ms"}, 0.9},
		{[]string{"resyncs_seen"}, 7.0},
		{[]string{"cpu", "cpu_s"}, 1.25},
		{[]string{"cpu", "percent"}, 50.0},
	} {
		if got := get(c.path...); got != c.want {
			t.Errorf("%v = %v, want %v in %s", c.path, got, c.want, b)
		}
	}
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"4 established, 1 failed", "1 × retransmissions exhausted", "123.5/s", "hike (pid 1) 1.25s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, text.String())
		}
	}
}
