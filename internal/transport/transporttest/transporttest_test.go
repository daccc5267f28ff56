package transporttest

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/transport"
)

type got struct {
	kind   transport.Kind
	data   []byte
	local  netip.Addr
	remote netip.AddrPort
}

type rec struct {
	ch   chan got
	echo bool
}

func (r *rec) HandleIKE(p *transport.Packet) {
	r.ch <- got{p.Kind, p.Data, p.Local, p.Remote}
	if r.echo {
		p.Conn.SendIKE(p.Local, p.Remote, p.Data)
	}
}

func (r *rec) HandleESP(p *transport.Packet) { r.ch <- got{p.Kind, p.Data, p.Local, p.Remote} }

func (r *rec) next(t *testing.T) got {
	t.Helper()
	select {
	case g := <-r.ch:
		return g
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered")
		return got{}
	}
}

func (r *rec) none(t *testing.T) {
	t.Helper()
	select {
	case g := <-r.ch:
		t.Fatalf("unexpected delivery %+v", g)
	case <-time.After(20 * time.Millisecond):
	}
}

func serve(t *testing.T, c *Conn, h transport.Handler) {
	done := make(chan error)
	go func() { done <- c.Serve(h) }()
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func mustListen(t *testing.T, n *Network, addr string, encap bool) *Conn {
	t.Helper()
	c, err := n.Listen(netip.MustParseAddrPort(addr), encap)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var ike = append([]byte{1, 2, 3, 4, 5, 6, 7, 8}, make([]byte, 20)...)

func TestExchange(t *testing.T) {
	n := NewNetwork()
	srv := mustListen(t, n, "0.0.0.0:4500", true)
	sr := &rec{ch: make(chan got, 16), echo: true}
	serve(t, srv, sr)
	cli := mustListen(t, n, "198.51.100.7:0", true)
	cr := &rec{ch: make(chan got, 16)}
	serve(t, cli, cr)

	for _, vip := range []string{"192.0.2.10", "192.0.2.11"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(vip), 4500)
		if err := cli.SendIKE(netip.Addr{}, to, ike); err != nil {
			t.Fatal(err)
		}
		g := sr.next(t)
		if g.local != to.Addr() || g.remote != cli.LocalAddr() || !bytes.Equal(g.data, ike) {
			t.Fatalf("server got %+v", g)
		}
		// The echo leaves from the VIP the request went to.
		if g := cr.next(t); g.remote != to || g.local != cli.LocalAddr().Addr() || !bytes.Equal(g.data, ike) {
			t.Fatalf("client got %+v", g)
		}
	}

	esp := []byte{0, 0, 1, 0, 0, 0, 0, 1}
	to := netip.MustParseAddrPort("192.0.2.10:4500")
	if err := cli.SendKeepalive(netip.Addr{}, to); err != nil {
		t.Fatal(err)
	}
	if err := cli.SendESP(netip.Addr{}, to, esp); err != nil {
		t.Fatal(err)
	}
	if g := sr.next(t); g.kind != transport.KindESP || !bytes.Equal(g.data, esp) {
		t.Fatalf("server got %+v", g)
	}
	if st := srv.Stats(); st.Keepalives != 1 || st.RxESP != 1 || st.RxIKE != 2 {
		t.Fatalf("server stats %+v", st)
	}
}

func TestWireChecks(t *testing.T) {
	n := NewNetwork()
	wild := mustListen(t, n, "0.0.0.0:500", false)
	to := netip.MustParseAddrPort("192.0.2.1:500")
	if err := wild.SendIKE(netip.Addr{}, to, ike); !errors.Is(err, ErrNoSource) {
		t.Fatalf("wildcard send without source: %v", err)
	}
	if err := wild.SendESP(netip.MustParseAddr("192.0.2.2"), to, ike); !errors.Is(err, transport.ErrNotEncap) {
		t.Fatalf("ESP on the IKE port: %v", err)
	}
	if err := wild.SendIKE(netip.MustParseAddr("2001:db8::1"), to, ike); !errors.Is(err, transport.ErrAddressFamily) {
		t.Fatalf("IPv6 source: %v", err)
	}
	if _, err := n.Listen(netip.MustParseAddrPort("0.0.0.0:500"), false); err == nil {
		t.Fatal("bound one address twice")
	}
}

func TestRoutingAndLoss(t *testing.T) {
	n := NewNetwork()
	wild := mustListen(t, n, "0.0.0.0:500", false)
	one := mustListen(t, n, "192.0.2.5:500", false)
	rw, ro := &rec{ch: make(chan got, 16)}, &rec{ch: make(chan got, 16)}
	serve(t, wild, rw)
	serve(t, one, ro)
	cli := mustListen(t, n, "198.51.100.1:0", false)
	cli.SendIKE(netip.Addr{}, netip.MustParseAddrPort("192.0.2.5:500"), ike)
	cli.SendIKE(netip.Addr{}, netip.MustParseAddrPort("192.0.2.6:500"), ike)
	if g := ro.next(t); g.local != netip.MustParseAddr("192.0.2.5") {
		t.Fatalf("address conn got %+v", g)
	}
	if g := rw.next(t); g.local != netip.MustParseAddr("192.0.2.6") {
		t.Fatalf("wildcard conn got %+v", g)
	}

	n.SetFilter(func(from, to netip.AddrPort, b []byte) bool { return to.Addr() != netip.MustParseAddr("192.0.2.5") })
	cli.SendIKE(netip.Addr{}, netip.MustParseAddrPort("192.0.2.5:500"), ike)
	cli.SendIKE(netip.Addr{}, netip.MustParseAddrPort("192.0.2.5:501"), ike) // nobody there
	ro.none(t)
	if st := cli.Stats(); st.Lost != 2 || st.TxDatagrams != 4 {
		t.Fatalf("client stats %+v", st)
	}
	n.SetFilter(nil)
	one.Close()
	// With the address socket gone, the wildcard one takes its traffic.
	cli.SendIKE(netip.Addr{}, netip.MustParseAddrPort("192.0.2.5:500"), ike)
	if g := rw.next(t); g.local != netip.MustParseAddr("192.0.2.5") {
		t.Fatalf("wildcard conn got %+v", g)
	}
}
