package userspace

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/transport"
)

// The real-path test runs two backends in two network namespaces joined by
// a veth pair: real TUN devices, real routes, real UDP sockets on port 4500
// from package transport, and the kernel's ping and TCP on top.
//
// Devices and sockets belong to the namespace of the thread that creates
// them and stay there whatever thread uses them later. So the test creates
// each side's TUN, rtnetlink socket, UDP socket and TCP sockets on a locked
// OS thread switched into the namespace (inNetns), and runs everything else
// normally. That keeps both ends in one test process (one -race, one
// profile, shared assertions) without a helper binary; a thread that could
// not switch back is left locked so the runtime retires it.

func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create network namespaces and TUN devices"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2's ip"
	} else if _, err := os.Stat("/dev/net/tun"); err != nil {
		why = "needs /dev/net/tun"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs fn on an OS thread inside the named namespace.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// side is one end of the tunnel.
type side struct {
	ns       string
	outer    netip.Addr // veth address
	inner    netip.Addr // address on lo, inside the tunnel
	inner6   netip.Addr // the same for IPv6
	backend  *Backend
	sock     *transport.Socket
	serveErr chan error
}

type espForwarder struct{ b *Backend }

func (h espForwarder) HandleIKE(p *transport.Packet) {}
func (h espForwarder) EndBatch()                     { h.b.EndBatch() }
func (h espForwarder) HandleESP(p *transport.Packet) {
	h.b.HandleESP(p.Local, p.Remote, p.Data)
}

// setupNetns creates namespaces A and B joined by veth, with the inner
// addresses on lo, and starts a backend and a NAT-T socket in each.
func setupNetns(t *testing.T, rawESP, outer6, coalesce bool) (a, b *side) {
	requireRoot(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), rand.IntN(1<<20))
	a = &side{ns: "hkus-a-" + id, outer: netip.MustParseAddr("192.168.77.1"), inner: netip.MustParseAddr("10.77.1.1"),
		inner6: netip.MustParseAddr("fd77:1::1")}
	b = &side{ns: "hkus-b-" + id, outer: netip.MustParseAddr("192.168.77.2"), inner: netip.MustParseAddr("10.77.2.1"),
		inner6: netip.MustParseAddr("fd77:2::1")}
	if outer6 {
		a.outer, b.outer = netip.MustParseAddr("fd00:77::1"), netip.MustParseAddr("fd00:77::2")
	}
	for _, s := range []*side{a, b} {
		ns := s.ns
		// Registered before creation, so that a half-built setup is
		// removed too; deleting a namespace removes its veth end and TUN.
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "netns", "add", ns)
	}
	run(t, "ip", "-n", a.ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", b.ns)
	for _, s := range []*side{a, b} {
		run(t, "ip", "-n", s.ns, "link", "set", "lo", "up")
		if outer6 {
			run(t, "ip", "-n", s.ns, "addr", "add", s.outer.String()+"/64", "dev", "veth0", "nodad")
		} else {
			run(t, "ip", "-n", s.ns, "addr", "add", s.outer.String()+"/24", "dev", "veth0")
		}
		run(t, "ip", "-n", s.ns, "link", "set", "veth0", "up")
		run(t, "ip", "-n", s.ns, "addr", "add", s.inner.String()+"/32", "dev", "lo")
		run(t, "ip", "-n", s.ns, "addr", "add", s.inner6.String()+"/128", "dev", "lo", "nodad")
	}
	for _, s := range []*side{a, b} {
		s := s
		err := inNetns(s.ns, func() error {
			sock, err := transport.Listen(transport.ListenConfig{Addr: netip.AddrPortFrom(s.outer, transport.PortNATT), Encap: true,
				ReadBuffer: 4 << 20, WriteBuffer: 4 << 20})
			if err != nil {
				return err
			}
			be, err := New(Config{Name: "hike0", SendESP: sock.SendESP, SendESPBatch: sock.Send, RawESP: rawESP,
				CoalesceInbound: coalesce, Logger: quietLogger()})
			if err != nil {
				sock.Close()
				return err
			}
			s.sock, s.backend = sock, be
			return nil
		})
		if err != nil {
			t.Fatalf("starting side %s: %v", s.ns, err)
		}
		s.serveErr = make(chan error, 1)
		go func() { s.serveErr <- s.sock.Serve(espForwarder{s.backend}) }()
		t.Cleanup(func() {
			s.backend.Close()
			s.sock.Close()
			<-s.serveErr
		})
	}
	return a, b
}

// installTunnel installs one AES-GCM-256 Child SA between the sides'
// inner addresses, with fresh random keys.
func installTunnel(t *testing.T, a, b *side, encap bool) (saAB, saBA dataplane.SAID) {
	t.Helper()
	mk := func(spi uint32, src, dst *side) dataplane.SA {
		sa := dataplane.SA{ID: dataplane.SAID{SPI: spi, Src: src.outer, Dst: dst.outer}, ReqID: 1,
			Alg: algGCM256, EncrKey: randomKey(t, 36), ReplayWindow: 1024}
		if encap {
			sa.Encap = &dataplane.UDPEncap{SrcPort: transport.PortNATT, DstPort: transport.PortNATT}
		}
		return sa
	}
	ab, ba := mk(0xc0000001, a, b), mk(0xc0000002, b, a)
	// One Child SA carries both families, as IKEv2 allows.
	host := func(s *side) []dataplane.TrafficSelector {
		return append(ts(netip.PrefixFrom(s.inner, 32).String()), ts(netip.PrefixFrom(s.inner6, 128).String())...)
	}
	if err := a.backend.AddSAs(dataplane.SAPair{In: ba, Out: ab}); err != nil {
		t.Fatal(err)
	}
	if err := b.backend.AddSAs(dataplane.SAPair{In: ab, Out: ba}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		s         *side
		pol       dataplane.Policies
		remoteSel *side
	}{
		{a, dataplane.Policies{ReqID: 1, Local: a.outer, Remote: b.outer, LocalTS: host(a), RemoteTS: host(b)}, b},
		{b, dataplane.Policies{ReqID: 1, Local: b.outer, Remote: a.outer, LocalTS: host(b), RemoteTS: host(a)}, a},
	} {
		if err := p.s.backend.InstallPolicies(p.pol); err != nil {
			t.Fatal(err)
		}
		// Idempotent: installing again changes nothing and does not fail
		// on the route that already exists.
		if err := p.s.backend.InstallPolicies(p.pol); err != nil {
			t.Fatal(err)
		}
		routes := run(t, "ip", "-n", p.s.ns, "route", "show", "proto", "104")
		want := fmt.Sprintf("%s dev hike0 scope link src %s", p.remoteSel.inner, p.s.inner)
		if !strings.Contains(routes, want) {
			t.Fatalf("routes in %s:\n%s\nwant %q", p.s.ns, routes, want)
		}
		routes6 := run(t, "ip", "-6", "-n", p.s.ns, "route", "show", "proto", "104")
		want6 := fmt.Sprintf("%s dev hike0 src %s", p.remoteSel.inner6, p.s.inner6)
		if !strings.Contains(routes6, want6) {
			t.Fatalf("IPv6 routes in %s:\n%s\nwant %q", p.s.ns, routes6, want6)
		}
	}
	return ab.ID, ba.ID
}

func TestNetnsPingAndTCP(t *testing.T) {
	for _, mode := range []struct {
		name     string
		encap    bool
		outer6   bool
		coalesce bool
	}{
		{"udp-encap", true, false, false}, {"raw-esp", false, false, false},
		{"udp-encap-outer6", true, true, false}, {"raw-esp-outer6", false, true, false},
		{"udp-encap-coalesce", true, false, true}, {"udp-encap-outer6-coalesce", true, true, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			a, b := setupNetns(t, !mode.encap, mode.outer6, mode.coalesce)
			ab, ba := installTunnel(t, a, b, mode.encap)

			out := run(t, "ip", "netns", "exec", a.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2",
				"-I", a.inner.String(), b.inner.String())
			if !strings.Contains(out, "3 received") {
				t.Fatalf("ping:\n%s", out)
			}
			out = run(t, "ip", "netns", "exec", a.ns, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2",
				"-I", a.inner6.String(), b.inner6.String())
			if !strings.Contains(out, "3 received") {
				t.Fatalf("ping -6:\n%s", out)
			}
			mbits := tcpTransfer(t, a, b, 32<<20)
			t.Logf("%s: one TCP stream through the tunnel (AES-GCM-256): %.0f Mbit/s", mode.name, mbits)

			for _, c := range []struct {
				s  *side
				id dataplane.SAID
			}{{a, ab}, {b, ab}, {b, ba}, {a, ba}} {
				cnt, err := c.s.backend.Counters(c.id)
				if err != nil {
					t.Fatal(err)
				}
				if cnt.Packets < 3 {
					t.Errorf("%s counters of %s: %+v", c.s.ns, c.id, cnt)
				}
			}
			for _, s := range []*side{a, b} {
				st := s.backend.Stats()
				t.Logf("%s stats %+v", s.ns, st)
				if st.DropAuth+st.DropUnknownSPI+st.DropPolicyMismatch+st.DropInvalid+st.DropSendFailed+st.DropTUNWrite != 0 {
					t.Errorf("%s drops: %+v", s.ns, st)
				}
			}

			// Removing the policies removes the routes.
			if err := a.backend.RemovePolicies(dataplane.Policies{ReqID: 1}); err != nil {
				t.Fatal(err)
			}
			for _, fam := range []string{"-4", "-6"} {
				if routes := run(t, "ip", fam, "-n", a.ns, "route", "show", "proto", "104"); strings.TrimSpace(routes) != "" {
					t.Errorf("routes left after RemovePolicies:\n%s", routes)
				}
			}

			if os.Getenv("HIKE_IPERF3") != "" {
				installTunnel2(t, a, b)
				iperf3(t, a, b)
			}
		})
	}
}

// installTunnel2 restores A's policies for the iperf3 run.
func installTunnel2(t *testing.T, a, b *side) {
	host := func(s *side) []dataplane.TrafficSelector {
		return append(ts(netip.PrefixFrom(s.inner, 32).String()), ts(netip.PrefixFrom(s.inner6, 128).String())...)
	}
	if err := a.backend.InstallPolicies(dataplane.Policies{ReqID: 1, Local: a.outer, Remote: b.outer,
		LocalTS: host(a), RemoteTS: host(b)}); err != nil {
		t.Fatal(err)
	}
}

// tcpTransfer sends n pseudo-random bytes from A's inner address to B's over
// TCP, checks that B received exactly them and returns the rate in Mbit/s.
func tcpTransfer(t *testing.T, a, b *side, n int) float64 {
	t.Helper()
	var ln net.Listener
	if err := inNetns(b.ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(b.inner, 5201).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		m, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = m, err
		res <- r
	}()

	data := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(data)
	var conn net.Conn
	if err := inNetns(a.ns, func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.inner, 0))}
		conn, err = d.Dial("tcp", netip.AddrPortFrom(b.inner, 5201).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	conn.SetDeadline(start.Add(60 * time.Second))
	if _, err := io.Copy(conn, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	var r result
	select {
	case r = <-res:
	case <-time.After(60 * time.Second):
		t.Fatal("receiver did not finish")
	}
	elapsed := time.Since(start)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	// CPU time of this process, both tunnel ends and both TCP endpoints
	// included: on a shared machine the rate depends on what else runs,
	// the cost per megabit much less.
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	t.Logf("%d MiB in %v using %v of CPU (user+system, both ends): %.0f Mbit per CPU-second",
		n>>20, elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(n)*8/1e6/cpu.Seconds())
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.n != int64(n) || r.sum != sha256.Sum256(data) {
		t.Fatalf("received %d bytes with a different checksum, want %d bytes", r.n, n)
	}
	return float64(n) * 8 / elapsed.Seconds() / 1e6
}

func iperf3(t *testing.T, a, b *side) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Log("iperf3 not installed")
		return
	}
	srv := exec.Command("ip", "netns", "exec", b.ns, "iperf3", "-s", "-1", "-B", b.inner.String(), "-p", "5202")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	time.Sleep(300 * time.Millisecond)
	out := run(t, "ip", "netns", "exec", a.ns, "iperf3", "-c", b.inner.String(), "-B", a.inner.String(),
		"-p", "5202", "-t", "5", "-J")
	var rep struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("iperf3, one TCP stream, 5 s: %.0f Mbit/s received", rep.End.SumReceived.BitsPerSecond/1e6)
}

// TestNetnsRoutes checks the route bookkeeping against the kernel: routes
// that already exist are tolerated and left alone, selectors covering the
// tunnel endpoints are not routed, shared prefixes are routed once and
// removed with their last policy, and Close removes the device.
func TestNetnsRoutes(t *testing.T) {
	requireRoot(t)
	ns := fmt.Sprintf("hkus-r-%d-%d", os.Getpid(), rand.IntN(1<<20))
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "netns", "add", ns)
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "link", "add", "vr0", "type", "veth", "peer", "name", "vr1")
	run(t, "ip", "-n", ns, "addr", "add", "192.168.5.1/24", "dev", "vr0")
	run(t, "ip", "-n", ns, "link", "set", "vr0", "up")
	run(t, "ip", "-n", ns, "link", "set", "vr1", "up")
	// An administrator's route for a prefix a policy will also cover.
	run(t, "ip", "-n", ns, "route", "add", "10.50.0.0/24", "dev", "vr0", "proto", "104")

	var be *Backend
	if err := inNetns(ns, func() (err error) {
		be, err = New(Config{Name: "hike0", Logger: quietLogger(),
			SendESP: func(netip.Addr, netip.AddrPort, []byte) error { return nil }})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			be.Close()
		}
	})
	outer := func(p dataplane.Policies) dataplane.Policies {
		p.Local, p.Remote = netip.MustParseAddr("192.168.5.1"), netip.MustParseAddr("192.168.5.2")
		return p
	}
	p1 := outer(dataplane.Policies{ReqID: 1, LocalTS: ts("10.40.0.0/24"),
		RemoteTS: append(ts("10.50.0.0/24"), ts("10.60.0.0/24")...)})
	p2 := outer(dataplane.Policies{ReqID: 2, LocalTS: ts("10.40.0.0/24"), RemoteTS: ts("10.60.0.0/24")})
	p3 := outer(dataplane.Policies{ReqID: 3, LocalTS: ts("10.40.0.0/24"), RemoteTS: ts("0.0.0.0/0")})
	for _, p := range []dataplane.Policies{p1, p2, p3} {
		if err := be.InstallPolicies(p); err != nil {
			t.Fatal(err)
		}
	}
	routes := func() string { return run(t, "ip", "-n", ns, "route", "show", "proto", "104") }
	got := routes()
	for _, want := range []string{"10.50.0.0/24 dev vr0", "10.60.0.0/24 dev hike0"} {
		if !strings.Contains(got, want) {
			t.Errorf("routes:\n%s\nmissing %q", got, want)
		}
	}
	if strings.Contains(got, "default") || strings.Count(got, "10.60.0.0/24") != 1 {
		t.Errorf("routes:\n%s\nwant no default route and one route for the shared prefix", got)
	}

	// 10.60.0.0/24 stays while p2 still uses it.
	be.RemovePolicies(p1)
	if got := routes(); !strings.Contains(got, "10.60.0.0/24 dev hike0") || !strings.Contains(got, "10.50.0.0/24 dev vr0") {
		t.Errorf("after removing p1:\n%s", got)
	}
	be.RemovePolicies(p2)
	if got := routes(); strings.Contains(got, "10.60.0.0/24") || !strings.Contains(got, "10.50.0.0/24 dev vr0") {
		t.Errorf("after removing p2:\n%s", got)
	}
	be.InstallPolicies(p2)
	closed = true
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if got := routes(); strings.Contains(got, "hike0") || !strings.Contains(got, "10.50.0.0/24 dev vr0") {
		t.Errorf("after Close:\n%s", got)
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "show", "hike0").CombinedOutput(); err == nil {
		t.Errorf("hike0 still exists after Close:\n%s", out)
	}
}
