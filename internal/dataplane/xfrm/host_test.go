package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// findIP finds iproute2. Busybox's ip has no netns or xfrm support and
// comes first in the qemu guest's PATH, so HIKE_IP and the usual paths win.
func findIP() (string, error) {
	cands := []string{os.Getenv("HIKE_IP"), "/usr/local/sbin/ip", "/usr/sbin/ip", "/sbin/ip", "/bin/ip"}
	if p, err := exec.LookPath("ip"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if p == "" {
			continue
		}
		if out, err := exec.Command(p, "-V").CombinedOutput(); err == nil && strings.Contains(string(out), "iproute2") {
			return p, nil
		}
	}
	return "", errors.New("iproute2's ip not found (set HIKE_IP)")
}

// scratchNetns creates a network namespace for one test and removes it
// afterwards. Policies and SA lookups need no ESP, so these tests run on
// any kernel with XFRM, the CI host included.
func scratchNetns(t *testing.T) (name, ip string) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to create a network namespace")
		}
		t.Skip("needs root to create a network namespace")
	}
	ip, err := findIP()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	name = fmt.Sprintf("hkx%d", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(ip, "netns", "del", name).Run() })
	return name, ip
}

func TestBackendPoliciesAndLookups(t *testing.T) {
	ns, ip := scratchNetns(t)
	b, err := Open(Options{NetNS: "/run/netns/" + ns})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	missing := dp.SAID{SPI: 0x1234, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")}
	if _, err := b.Counters(missing); !errors.Is(err, dp.ErrNotFound) {
		t.Errorf("Counters of a missing SA: %v, want ErrNotFound", err)
	}
	if err := b.DeleteSA(missing); !errors.Is(err, dp.ErrNotFound) {
		t.Errorf("DeleteSA of a missing SA: %v, want ErrNotFound", err)
	}
	if _, err := b.ReplayState(missing); !errors.Is(err, dp.ErrNotFound) {
		t.Errorf("ReplayState of a missing SA: %v, want ErrNotFound", err)
	}

	p := dp.Policies{ReqID: 77, Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		LocalTS: []dp.TrafficSelector{dp.PrefixSelector(netip.MustParsePrefix("10.1.0.0/24"))},
		RemoteTS: []dp.TrafficSelector{{Start: netip.MustParseAddr("10.2.0.0"), End: netip.MustParseAddr("10.2.255.255"),
			Proto: 6, StartPort: 1024, EndPort: 2047}},
	}
	if err := b.InstallPolicies(p); err != nil {
		t.Fatal(err)
	}
	if err := b.InstallPolicies(p); err != nil {
		t.Fatalf("InstallPolicies is not idempotent: %v", err)
	}
	out, err := exec.Command(ip, "-n", ns, "xfrm", "policy").CombinedOutput()
	if err != nil {
		t.Fatalf("ip xfrm policy: %v\n%s", err, out)
	}
	// without /etc/protocols (the qemu guest) ip prints the number
	text := strings.ReplaceAll(string(out), "proto 6 ", "proto tcp ")
	for _, want := range []string{
		"src 10.1.0.0/24 dst 10.2.0.0/16 proto tcp dport 1024", "dir out",
		"src 10.2.0.0/16 dst 10.1.0.0/24 proto tcp sport 1024", "dir in", "dir fwd",
		"tmpl src 192.0.2.1 dst 192.0.2.2", "tmpl src 192.0.2.2 dst 192.0.2.1",
		"proto esp reqid 77 mode tunnel",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("kernel policies lack %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "reqid 77"); n != 3 {
		t.Errorf("%d policies with reqid 77, want 3 (out, in, fwd):\n%s", n, text)
	}
	if err := b.RemovePolicies(p); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(ip, "-n", ns, "xfrm", "policy").CombinedOutput(); strings.Contains(string(out), "reqid 77") {
		t.Fatalf("policies left after RemovePolicies:\n%s", out)
	}

	// Without kernel ESP, adding an SA must fail with the kernel's reason
	// and leave nothing behind; with ESP it must succeed.
	sa := func(id dp.SAID) dp.SA {
		return dp.SA{ID: id, ReqID: 77, Alg: dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_256_128},
			EncrKey: make([]byte, 16), IntegKey: make([]byte, 32), ReplayWindow: 32}
	}
	in := sa(dp.SAID{SPI: 0x2001, Src: p.Remote, Dst: p.Local})
	outSA := sa(dp.SAID{SPI: 0x2002, Src: p.Local, Dst: p.Remote})
	err = b.AddSAs(dp.SAPair{In: in, Out: outSA})
	if Probe() != nil {
		if err == nil || !errors.Is(err, syscall.EPROTONOSUPPORT) {
			t.Fatalf("AddSAs without kernel ESP: %v, want EPROTONOSUPPORT", err)
		}
	} else if err != nil {
		t.Fatalf("AddSAs: %v", err)
	}
}

// An idle daemon that never drains Events must not make Close hang.
func TestEmitGivesUpOnClose(t *testing.T) {
	b := &Backend{events: make(chan dp.Event), done: make(chan struct{})}
	res := make(chan bool, 1)
	go func() { res <- b.emit(dp.Event{Kind: dp.EventSoftExpire}) }()
	close(b.done)
	select {
	case ok := <-res:
		if ok {
			t.Fatal("emit reported delivery to a channel nobody reads")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("emit blocked after Close")
	}
}

func TestBackendClose(t *testing.T) {
	ns, _ := scratchNetns(t)
	b, err := Open(Options{NetNS: "/run/netns/" + ns, EventBuffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
	for range b.Events() {
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Counters(dp.SAID{SPI: 1, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")}); err == nil {
		t.Fatal("Counters after Close succeeded")
	}
}
