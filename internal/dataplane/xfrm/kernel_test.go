//go:build xfrmkernel

// Kernel integration tests: they install real ESP SAs, so they need a
// kernel with ESP and run as root. They are built only with -tags
// xfrmkernel; test/qemu/run.sh builds them that way and boots them under
// Debian's stock kernel, because the development and CI hosts lack ESP.

package xfrm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dp "github.com/hike-vpn/hike/internal/dataplane"
	"golang.org/x/sys/unix"
	"net/netip"
)

func ipTool(t *testing.T) string {
	ip, err := findIP()
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

type lab struct {
	t      *testing.T
	ip     string
	nsA    string
	nsB    string
	a, b   *Backend
	outerA netip.Addr
	outerB netip.Addr
	outer6 [2]netip.Addr
}

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// batch runs iproute2 commands in one process inside ns: under TCG every
// exec of the dynamically linked ip costs a noticeable fraction of a second.
func (l *lab) batch(ns string, cmds ...string) {
	l.t.Helper()
	cmd := exec.Command(l.ip, "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("ip -n %s -batch: %v\n%s\n%s", ns, err, strings.Join(cmds, "\n"), out)
	}
}

// newLab creates two namespaces joined by a veth pair and opens a backend
// in each. Everything is removed when the test ends, also on failure.
func newLab(t *testing.T) *lab {
	if err := Probe(); err != nil {
		t.Fatalf("kernel cannot run these tests: %v", err)
	}
	l := &lab{t: t, ip: ipTool(t), outerA: netip.MustParseAddr("192.168.100.1"), outerB: netip.MustParseAddr("192.168.100.2"),
		outer6: [2]netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")}}
	suffix := fmt.Sprint(os.Getpid())
	l.nsA, l.nsB = "hkA"+suffix, "hkB"+suffix
	t.Cleanup(func() {
		exec.Command(l.ip, "netns", "del", l.nsA).Run()
		exec.Command(l.ip, "netns", "del", l.nsB).Run()
	})
	l.run("netns", "add", l.nsA)
	l.run("netns", "add", l.nsB)
	l.batch(l.nsA,
		"link add vA type veth peer name vB netns "+l.nsB,
		"link set lo up",
		"addr add 192.168.100.1/24 dev vA",
		"addr add fd00::1/64 dev vA nodad",
		"link set vA up")
	l.batch(l.nsB,
		"link set lo up",
		"addr add 192.168.100.2/24 dev vB",
		"addr add fd00::2/64 dev vB nodad",
		"link set vB up")
	var err error
	if l.a, err = Open(Options{NetNS: "/run/netns/" + l.nsA}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.a.Close() })
	if l.b, err = Open(Options{NetNS: "/run/netns/" + l.nsB}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.b.Close() })
	return l
}

// inner returns the protected addresses of tunnel n: 10.1.n.1 behind A,
// 10.2.n.1 behind B, and routes them across the veth.
func (l *lab) inner(n int) (netip.Addr, netip.Addr) {
	ia, ib := fmt.Sprintf("10.1.%d.1", n), fmt.Sprintf("10.2.%d.1", n)
	l.batch(l.nsA, "addr add "+ia+"/32 dev lo", fmt.Sprintf("route add 10.2.%d.0/24 via 192.168.100.2 src %s", n, ia))
	l.batch(l.nsB, "addr add "+ib+"/32 dev lo", fmt.Sprintf("route add 10.1.%d.0/24 via 192.168.100.1 src %s", n, ib))
	return netip.MustParseAddr(ia), netip.MustParseAddr(ib)
}

// inner6 is inner for IPv6: fd01:n::1 behind A, fd02:n::1 behind B.
func (l *lab) inner6(n int) (netip.Addr, netip.Addr) {
	ia, ib := fmt.Sprintf("fd01:%d::1", n), fmt.Sprintf("fd02:%d::1", n)
	l.batch(l.nsA, "addr add "+ia+"/128 dev lo", fmt.Sprintf("route add fd02:%d::/64 via fd00::2 src %s", n, ia))
	l.batch(l.nsB, "addr add "+ib+"/128 dev lo", fmt.Sprintf("route add fd01:%d::/64 via fd00::1 src %s", n, ib))
	return netip.MustParseAddr(ia), netip.MustParseAddr(ib)
}

// ping sends count ICMP echo requests from A's address from to B's address
// to, one at a time, and fails unless every one is answered within wait.
// It runs in-process: an exec of ping per probe is slow under TCG.
func (l *lab) ping(from, to netip.Addr, count int, wait time.Duration) error {
	v6 := from.Is6()
	var fd int
	err := inNetns("/run/netns/"+l.nsA, func() error {
		var err error
		if v6 {
			if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6); err != nil {
				return err
			}
			return unix.Bind(fd, &unix.SockaddrInet6{Addr: from.As16()})
		}
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: from.As4()})
	})
	if err != nil {
		return fmt.Errorf("icmp socket: %w", err)
	}
	defer unix.Close(fd)
	id := uint16(os.Getpid())
	echo, reply := byte(8), byte(0)
	var dst unix.Sockaddr
	if v6 {
		// The kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets.
		echo, reply = 128, 129
		dst = &unix.SockaddrInet6{Addr: to.As16()}
	} else {
		dst = &unix.SockaddrInet4{Addr: to.As4()}
	}
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		req := []byte{echo, 0, 0, 0, byte(id >> 8), byte(id), 0, byte(seq), 'h', 'i', 'k', 'e'}
		if !v6 {
			cs := icmpChecksum(req)
			req[2], req[3] = byte(cs>>8), byte(cs)
		}
		if err := unix.Sendto(fd, req, 0, dst); err != nil {
			return fmt.Errorf("ping %s -> %s seq %d: %w", from, to, seq, err)
		}
		deadline := time.Now().Add(wait)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("ping %s -> %s seq %d: no reply within %v", from, to, seq, wait)
			}
			tv := unix.NsecToTimeval(left.Nanoseconds())
			_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			n, sa, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return fmt.Errorf("ping %s -> %s: %w", from, to, err)
			}
			var src netip.Addr
			p := buf[:n]
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				src = netip.AddrFrom4(a.Addr)
				if n < 20 {
					continue
				}
				p = buf[int(buf[0]&0xf)*4 : n] // raw IPv4 sockets deliver the IP header
			case *unix.SockaddrInet6:
				src = netip.AddrFrom16(a.Addr)
			}
			if len(p) >= 8 && p[0] == reply && src == to && uint16(p[4])<<8|uint16(p[5]) == id && int(p[7]) == seq {
				break
			}
		}
	}
	return nil
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// encapSocket opens the UDP socket on port 4500 that hands ESP-in-UDP to
// the kernel (RFC 3948); the daemon's transport does the same.
func (l *lab) encapSocket(ns string) {
	var fd int
	err := inNetns("/run/netns/"+ns, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Port: 4500})
	})
	if err != nil {
		l.t.Fatalf("encap socket in %s: %v", ns, err)
	}
	l.t.Cleanup(func() { unix.Close(fd) })
}

func key(n int, seed byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = seed ^ byte(i*7)
	}
	return k
}

type tunnelCase struct {
	name   string
	alg    dp.Algorithm
	esn    bool
	window uint32
	encap  bool
	v6     bool        // IPv6 outside and inside
	life   dp.Lifetime // on A's outbound SA
}

// child installs one Child SA between A and B (both directions, both
// hosts) with policies for tunnel n, and returns the SA IDs as seen from A.
func (l *lab) child(n int, c tunnelCase) (aOut, aIn dp.SAID, ia, ib netip.Addr) {
	l.t.Helper()
	outerA, outerB, bits := l.outerA, l.outerB, 24
	if c.v6 {
		ia, ib = l.inner6(n)
		outerA, outerB, bits = l.outer6[0], l.outer6[1], 64
	} else {
		ia, ib = l.inner(n)
	}
	ek, ik, err := c.alg.KeyLen()
	if err != nil {
		l.t.Fatal(err)
	}
	reqid := uint32(100 + n)
	ab := dp.SAID{SPI: 0xa000 + uint32(n), Src: outerA, Dst: outerB}
	ba := dp.SAID{SPI: 0xb000 + uint32(n), Src: outerB, Dst: outerA}
	mk := func(id dp.SAID, seed byte) dp.SA {
		sa := dp.SA{ID: id, ReqID: reqid, Alg: c.alg, EncrKey: key(ek, seed), IntegKey: key(ik, seed+1), ESN: c.esn, ReplayWindow: c.window}
		if c.encap {
			sa.Encap = &dp.UDPEncap{SrcPort: 4500, DstPort: 4500}
		}
		return sa
	}
	abSA, baSA := mk(ab, 0x10), mk(ba, 0x20)
	outA := abSA
	outA.Lifetime = c.life
	if err := l.a.AddSAs(dp.SAPair{In: baSA, Out: outA}); err != nil {
		l.t.Fatalf("A AddSAs: %v", err)
	}
	if err := l.b.AddSAs(dp.SAPair{In: abSA, Out: baSA}); err != nil {
		l.t.Fatalf("B AddSAs: %v", err)
	}
	pol := func(local, remote, innerL, innerR netip.Addr) dp.Policies {
		return dp.Policies{ReqID: reqid, Local: local, Remote: remote,
			LocalTS:  []dp.TrafficSelector{dp.PrefixSelector(netip.PrefixFrom(innerL, bits))},
			RemoteTS: []dp.TrafficSelector{dp.PrefixSelector(netip.PrefixFrom(innerR, bits))}}
	}
	if err := l.a.InstallPolicies(pol(outerA, outerB, ia, ib)); err != nil {
		l.t.Fatalf("A InstallPolicies: %v", err)
	}
	if err := l.b.InstallPolicies(pol(outerB, outerA, ib, ia)); err != nil {
		l.t.Fatalf("B InstallPolicies: %v", err)
	}
	return ab, ba, ia, ib
}

func TestKernelTunnels(t *testing.T) {
	l := newLab(t)
	cases := []tunnelCase{
		{name: "aes-gcm-128", alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, window: 32},
		{name: "aes-cbc-128-sha256-esn", alg: dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_256_128}, esn: true, window: 64},
		{name: "aes-gcm-256-esn-udp", alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 256}, esn: true, window: 128, encap: true},
		{name: "aes-cbc-256-sha1-window64", alg: dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 256, Integ: dp.IntegHMACSHA1_96}, window: 64},
		{name: "chacha20-poly1305", alg: dp.Algorithm{Encr: dp.EncrChaCha20Poly1305}, window: 32},
		{name: "aes-cbc-192-sha512-esn", alg: dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 192, Integ: dp.IntegHMACSHA2_512_256}, esn: true, window: 32},
		{name: "aes-gcm-128-ipv6-esn", alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, esn: true, window: 64, v6: true},
	}
	encapOpen := false
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l.t = t
			if c.encap && !encapOpen {
				l.encapSocket(l.nsA)
				l.encapSocket(l.nsB)
				encapOpen = true
			}
			aOut, _, ia, ib := l.child(i+1, c)
			bIn := aOut // B's inbound SA is A's outbound one, installed in B's kernel
			if err := l.ping(ia, ib, 3, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			cnt, err := l.a.Counters(aOut)
			if err != nil {
				t.Fatal(err)
			}
			if cnt.Packets < 3 || cnt.Bytes == 0 {
				t.Fatalf("A outbound counters %+v, want >= 3 packets", cnt)
			}
			cntB, err := l.b.Counters(bIn)
			if err != nil || cntB.Packets != cnt.Packets {
				t.Fatalf("B inbound counters %+v (%v), want %d packets like A's outbound", cntB, err, cnt.Packets)
			}
			oseq, err := l.a.OutboundSeq(aOut)
			if err != nil || oseq != cnt.Packets {
				t.Fatalf("A OutboundSeq = %d, %v; want %d (one per packet sent)", oseq, err, cnt.Packets)
			}
			r, err := l.b.ReplayState(bIn)
			if err != nil {
				t.Fatal(err)
			}
			if r.Seq != oseq || r.Window != c.window || len(r.Bitmap) == 0 || r.Bitmap[0]&0b111 != 0b111 {
				t.Fatalf("B ReplayState = %+v; want top %d, window %d, last three received", r, oseq, c.window)
			}
			t.Logf("after 3 pings: A out %+v seq %d; B in %+v", cnt, oseq, r)

			// SetReplayState round trip with a pattern the kernel never makes itself.
			pattern := dp.Replay{Seq: oseq + 40, Bitmap: make([]uint32, len(r.Bitmap))}
			pattern.Bitmap[0] = 0b1011
			if err := l.b.SetReplayState(bIn, pattern); err != nil {
				t.Fatal(err)
			}
			got, err := l.b.ReplayState(bIn)
			if err != nil || got.Seq != pattern.Seq || got.Bitmap[0] != 0b1011 {
				t.Fatalf("ReplayState after set = %+v, %v; want top %d bitmap 0b1011", got, err, pattern.Seq)
			}

			// RFC 6311 §5.2: jump A's outbound counter, advance B's window
			// by the same delta. With ESN the jump crosses 2^32, so the
			// receiver must infer the new high-order bits.
			delta := uint64(1 << 20)
			if c.esn {
				delta = 1<<32 + 1000
			}
			newSeq := pattern.Seq + delta
			if err := l.a.SetOutboundSeq(aOut, newSeq); err != nil {
				t.Fatal(err)
			}
			if got, err := l.a.OutboundSeq(aOut); err != nil || got != newSeq {
				t.Fatalf("OutboundSeq after set = %#x, %v; want %#x", got, err, newSeq)
			}
			if err := l.b.AdvanceReplay(bIn, delta); err != nil {
				t.Fatal(err)
			}
			adv, err := l.b.ReplayState(bIn)
			if err != nil || adv.Seq != newSeq || adv.Bitmap[0] != 0xffffffff {
				t.Fatalf("ReplayState after advance = %+v, %v; want top %#x, window full", adv, err, newSeq)
			}
			if err := l.ping(ia, ib, 2, 5*time.Second); err != nil {
				t.Fatalf("after the counter jump: %v", err)
			}
			after, err := l.b.ReplayState(bIn)
			if err != nil || after.Seq != newSeq+2 {
				t.Fatalf("B top after 2 more packets = %#x, %v; want %#x", after.Seq, err, newSeq+2)
			}
			if got, _ := l.a.OutboundSeq(aOut); got != newSeq+2 {
				t.Fatalf("A OutboundSeq after 2 more packets = %#x, want %#x", got, newSeq+2)
			}

			if i == 0 {
				// The written state really guards the data path: a sender
				// rewound below the window is dropped as a replay.
				if err := l.a.SetOutboundSeq(aOut, 5); err != nil {
					t.Fatal(err)
				}
				if err := l.ping(ia, ib, 1, time.Second); err == nil {
					t.Fatal("ping succeeded although A reused old sequence numbers")
				}
				if err := l.a.SetOutboundSeq(aOut, newSeq+100); err != nil {
					t.Fatal(err)
				}
				if err := l.ping(ia, ib, 1, 5*time.Second); err != nil {
					t.Fatalf("after moving A forward again: %v", err)
				}
			}
			if !c.esn {
				if err := l.a.SetOutboundSeq(aOut, 1<<32); err == nil {
					t.Error("64-bit sequence number accepted on a non-ESN SA")
				}
			}
		})
	}
	l.t = t
}

func TestKernelUpdateDelete(t *testing.T) {
	l := newLab(t)
	c := tunnelCase{alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, window: 32}
	aOut, aIn, ia, ib := l.child(20, c)
	if err := l.ping(ia, ib, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// UpdateSA keeps the SA (and its counters) while changing lifetimes.
	ek, _, _ := c.alg.KeyLen()
	upd := dp.SA{ID: aOut, ReqID: 120, Alg: c.alg, EncrKey: key(ek, 0x10), ReplayWindow: 32, Lifetime: dp.Lifetime{SoftPackets: 1000, HardPackets: 2000}}
	if err := l.a.UpdateSA(upd); err != nil {
		t.Fatal(err)
	}
	if cnt, err := l.a.Counters(aOut); err != nil || cnt.Packets == 0 {
		t.Fatalf("counters after update %+v, %v; want the old SA's", cnt, err)
	}
	if err := l.ping(ia, ib, 1, 5*time.Second); err != nil {
		t.Fatalf("after UpdateSA: %v", err)
	}
	missing := dp.SAID{SPI: 0xdead, Src: l.outerA, Dst: l.outerB}
	if _, err := l.a.Counters(missing); !errors.Is(err, dp.ErrNotFound) {
		t.Fatalf("Counters of a missing SA: %v, want ErrNotFound", err)
	}
	for _, id := range []dp.SAID{aOut, aIn} {
		if err := l.a.DeleteSA(id); err != nil {
			t.Fatal(err)
		}
		if err := l.a.DeleteSA(id); !errors.Is(err, dp.ErrNotFound) {
			t.Fatalf("second DeleteSA: %v, want ErrNotFound", err)
		}
	}
	pol := dp.Policies{ReqID: 120, Local: l.outerA, Remote: l.outerB,
		LocalTS:  []dp.TrafficSelector{dp.PrefixSelector(netip.PrefixFrom(ia, 24))},
		RemoteTS: []dp.TrafficSelector{dp.PrefixSelector(netip.PrefixFrom(ib, 24))}}
	if err := l.a.RemovePolicies(pol); err != nil {
		t.Fatal(err)
	}
	if err := l.a.RemovePolicies(pol); err != nil {
		t.Fatalf("removing missing policies: %v", err)
	}
	out, _ := exec.Command(l.ip, "-n", l.nsA, "xfrm", "policy").CombinedOutput()
	if strings.Contains(string(out), "10.2.20.0/24") {
		t.Fatalf("policies left after RemovePolicies:\n%s", out)
	}
}

func TestKernelExpire(t *testing.T) {
	l := newLab(t)
	c := tunnelCase{alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, window: 32,
		life: dp.Lifetime{SoftPackets: 2, HardPackets: 4}}
	aOut, _, ia, ib := l.child(30, c)
	_ = l.ping(ia, ib, 6, time.Second) // the SA dies on the way; only the events matter
	want := map[dp.EventKind]bool{dp.EventSoftExpire: false, dp.EventHardExpire: false}
	deadline := time.After(10 * time.Second)
	for !want[dp.EventSoftExpire] || !want[dp.EventHardExpire] {
		select {
		case ev := <-l.a.Events():
			t.Logf("event %s %s reqid %d", ev.Kind, ev.SA, ev.ReqID)
			if ev.SA == aOut && ev.ReqID == 130 {
				want[ev.Kind] = true
			}
		case <-deadline:
			t.Fatalf("expire events seen: %v", want)
		}
	}
}
