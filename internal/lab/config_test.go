package lab

import (
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/wire"
)

// loadHikeConfig writes a fresh PSK and the gateway configuration into a
// temporary directory and loads it as `hike serve` would.
func loadHikeConfig(t *testing.T, dpd time.Duration) (*config.Config, string, string) {
	t.Helper()
	dir := t.TempDir()
	psk, err := newPSK()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lab.psk"), []byte(psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hike.yaml")
	if err := os.WriteFile(path, []byte(hikeConfig(dir, dpd)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("hike rejects the lab's configuration: %v\n%s", err, hikeConfig(dir, dpd))
	}
	return cfg, dir, psk
}

func TestHikeConfig(t *testing.T) {
	cfg, dir, psk := loadHikeConfig(t, 2*time.Second)
	if len(cfg.Listen.Addrs) != 1 || cfg.Listen.Addrs[0] != gwOuter {
		t.Errorf("listen addrs %v, want only %v", cfg.Listen.Addrs, gwOuter)
	}
	if want := filepath.Join(dir, "control.sock"); cfg.ControlSocket != want {
		t.Errorf("control socket %q, want %q", cfg.ControlSocket, want)
	}
	if cfg.Dataplane.Kind != config.DataplaneUserspace {
		t.Errorf("data plane %q, want userspace", cfg.Dataplane.Kind)
	}
	conn := cfg.Connection("lab")
	if conn == nil || len(cfg.Connections) != 1 {
		t.Fatalf("connections %v, want exactly lab", cfg.Connections)
	}
	if conn.DPD.Delay != 2*time.Second {
		t.Errorf("DPD delay %v, want 2s", conn.DPD.Delay)
	}
	key, err := hex.DecodeString(strings.TrimPrefix(psk, "0x"))
	if err != nil || string(conn.PSK.Bytes()) != string(key) {
		t.Errorf("the gateway's PSK is not the one written to lab.psk")
	}
	if len(conn.Children) != 1 {
		t.Fatalf("children %d, want 1", len(conn.Children))
	}
	ch := conn.Children[0]
	if got := tsPrefixes(t, ch.LocalTS); got != protectedNet.String() {
		t.Errorf("local_ts %s, want %s", got, protectedNet)
	}
	if got := tsPrefixes(t, ch.RemoteTS); got != clientsNet.String() {
		t.Errorf("remote_ts %s, want %s", got, clientsNet)
	}
}

func tsPrefixes(t *testing.T, tss []config.TrafficSelector) string {
	t.Helper()
	var s []string
	for _, ts := range tss {
		r, ok := ts.Range()
		if !ok {
			t.Fatalf("dynamic selector %+v", ts)
		}
		s = append(s, r.String())
	}
	return strings.Join(s, ",")
}

var (
	swanLocalID  = regexp.MustCompile(`local \{\s*auth = psk\s*id = (\S+)`)
	swanRemoteID = regexp.MustCompile(`remote \{\s*auth = psk\s*id = (\S+)`)
	swanLocalTS  = regexp.MustCompile(`local_ts = (\S+)`)
	swanRemoteTS = regexp.MustCompile(`remote_ts = (\S+)`)
	swanSecret   = regexp.MustCompile(`secret = (\S+)`)
	swanDPD      = regexp.MustCompile(`dpd_delay = (\S+)`)
)

// TestSwanConfigFitsGateway: each client's strongSwan configuration is one
// the gateway accepts: its identity matches the gateway's pattern, it
// expects the gateway's identity, its selectors lie within the gateway's,
// and it holds the same key.
func TestSwanConfigFitsGateway(t *testing.T) {
	cfg, _, psk := loadHikeConfig(t, 3*time.Second)
	conn := cfg.Connection("lab")
	for _, i := range []int{1, 2, 17, maxClients} {
		sc := swanConfig(i, gwOuter, tunnelClientID(i), ikeProposal, psk, 3*time.Second)
		id := submatch(t, swanLocalID, sc)
		if !conn.Remote.ID.Matches(wire.ID_FQDN, []byte(id)) {
			t.Errorf("client %d: identity %q does not match the gateway's remote id %v", i, id, conn.Remote.ID)
		}
		if got := submatch(t, swanRemoteID, sc); !conn.Local.ID.Matches(wire.ID_FQDN, []byte(got)) {
			t.Errorf("client %d expects the gateway as %q, gateway is %v", i, got, conn.Local.ID)
		}
		_, inner := clientAddrs(i)
		lts := netip.MustParsePrefix(submatch(t, swanLocalTS, sc))
		if lts != netip.PrefixFrom(inner, 32) || !clientsNet.Contains(inner) {
			t.Errorf("client %d: local_ts %v, want %v/32 within %v", i, lts, inner, clientsNet)
		}
		if rts := submatch(t, swanRemoteTS, sc); rts != tsPrefixes(t, conn.Children[0].LocalTS) {
			t.Errorf("client %d: remote_ts %s, gateway offers %s", i, rts, tsPrefixes(t, conn.Children[0].LocalTS))
		}
		if submatch(t, swanSecret, sc) != psk {
			t.Errorf("client %d holds another key than the gateway", i)
		}
		if d := submatch(t, swanDPD, sc); d != "3s" {
			t.Errorf("client %d: dpd_delay %s, want 3s", i, d)
		}
	}
}

func submatch(t *testing.T, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%v not found in:\n%s", re, s)
	}
	return m[1]
}

func TestClientAddrs(t *testing.T) {
	outerNet := netip.PrefixFrom(gwOuter, outerBits).Masked()
	seen := map[netip.Addr]int{gwOuter: 0, gwInner: 0}
	for i := 1; i <= maxClients; i++ {
		outer, inner := clientAddrs(i)
		if !outerNet.Contains(outer) || !clientsNet.Contains(inner) || protectedNet.Contains(inner) {
			t.Fatalf("client %d: outer %v inner %v outside the lab's networks", i, outer, inner)
		}
		for _, a := range []netip.Addr{outer, inner} {
			if j, dup := seen[a]; dup {
				t.Fatalf("client %d reuses %v of %d", i, a, j)
			}
			seen[a] = i
		}
	}
}

func TestPSKFresh(t *testing.T) {
	a, err := newPSK()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newPSK()
	if a == b || len(a) != 2+64 || !strings.HasPrefix(a, "0x") {
		t.Fatalf("keys %d and %d characters, equal %v", len(a), len(b), a == b)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{{0, "1s"}, {400 * time.Millisecond, "1s"}, {1500 * time.Millisecond, "2s"}, {4 * time.Second, "4s"}, {2 * time.Minute, "120s"}} {
		if got := seconds(tc.in); got != tc.want {
			t.Errorf("seconds(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ period, want time.Duration }{
		{2 * time.Second, time.Second}, {4 * time.Second, time.Second}, {9 * time.Second, 3 * time.Second}, {10 * time.Second, 3 * time.Second},
	} {
		if got := dpdDelay(tc.period); got != tc.want {
			t.Errorf("dpdDelay(%v) = %v, want %v", tc.period, got, tc.want)
		}
	}
}

func TestParseClients(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind string
		n    int
		ok   bool
	}{
		{"1", ClientAuto, 1, true},
		{"12", ClientAuto, 12, true},
		{"strongswan", ClientStrongSwan, 1, true},
		{"strongswan:3", ClientStrongSwan, 3, true},
		{"auto:2", ClientAuto, 2, true},
		{"0", "", 0, false},
		{"-2", "", 0, false},
		{"251", ClientAuto, 251, true}, // simulated clients in the failover scenario
		{"60000", ClientAuto, 60000, true},
		{"60001", "", 0, false},
		{"strongswan:250", ClientStrongSwan, 250, true},
		{"strongswan:251", "", 0, false},
		{"strongswan:", "", 0, false},
		{"strongswan:x", "", 0, false},
		{"libreswan", "", 0, false},
		{"", "", 0, false},
	} {
		kind, n, err := ParseClients(tc.in)
		if (err == nil) != tc.ok || kind != tc.kind || n != tc.n {
			t.Errorf("ParseClients(%q) = %q, %d, %v; want %q, %d, ok %v", tc.in, kind, n, err, tc.kind, tc.n, tc.ok)
		}
	}
}
