package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread moved into a new network namespace with lo up
// and addrs added to it. The thread is never unlocked, so the runtime ends
// it when f returns, and the namespace goes with it once the sockets f made
// are closed: nothing outlives the test, even on failure.
func inNetns(t *testing.T, addrs []string, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network namespace tests need root")
		}
		t.Skip("network namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ip(8) is missing")
		}
		t.Skip("ip(8) is missing")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		// A child forked from this thread inherits its namespace.
		cmds := [][]string{{"link", "set", "lo", "up"}}
		for _, a := range addrs {
			cmds = append(cmds, []string{"addr", "add", a, "dev", "lo", "nodad"})
		}
		for _, c := range cmds {
			if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
				errc <- fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out)
				return
			}
		}
		// The kernel installs an address's local route from a work queue
		// after "ip addr add" returns; until then datagrams to it vanish.
		for _, a := range addrs {
			if err := waitLocalRoute(strings.Split(a, "/")[0]); err != nil {
				errc <- err
				return
			}
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("netns setup: %v", err)
	}
}

func waitLocalRoute(addr string) error {
	for range 200 {
		out, err := exec.Command("ip", "route", "get", addr).CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), "local ") {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no local route to %s", addr)
}

// TestReplySourceIPv6VIPs repeats TestReplySource for IPv6 with two VIPs,
// which the host's loopback lacks (it has ::1 only).
func TestReplySourceIPv6VIPs(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::11")}
	var srv *Socket
	clients := make([]*net.UDPConn, len(vips))
	var setupErr error
	inNetns(t, []string{"2001:db8::10/128", "2001:db8::11/128"}, func() {
		srv, setupErr = Listen(ListenConfig{Addr: netip.AddrPortFrom(any6, 0), Encap: true})
		if setupErr != nil {
			return
		}
		for i, v := range vips {
			clients[i], setupErr = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(v, 0)))
			if setupErr != nil {
				return
			}
		}
	})
	if srv != nil {
		t.Cleanup(func() { srv.Close() })
	}
	for _, c := range clients {
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	r := newRecorder()
	r.echo = true
	serve(t, srv, r)
	// Each client sends to the other VIP, so that the kernel's own choice
	// of source (the client's address) would be wrong.
	for i, c := range clients {
		to := netip.AddrPortFrom(vips[1-i], srv.LocalAddr().Port())
		msg := withMarker(ikeMsg(byte(i)))
		sendTo(t, c, to, msg)
		if p := r.next(t); p.local != to.Addr() || !bytes.Equal(p.data, ikeMsg(byte(i))) {
			t.Fatalf("delivered %x to %v, want %v", p.data, p.local, to.Addr())
		}
		got, from := readFrom(t, c)
		if from != to || !bytes.Equal(got, msg) {
			t.Fatalf("reply %x from %v, want %x from %v", got, from, msg, to)
		}
	}
	// A VIP this node has given away is no source for replies.
	c := clients[0]
	err := srv.SendIKE(netip.MustParseAddr("2001:db8::99"), c.LocalAddr().(*net.UDPAddr).AddrPort(), ikeMsg(9))
	if err == nil {
		t.Fatal("sent from an address that is not local")
	}
}
