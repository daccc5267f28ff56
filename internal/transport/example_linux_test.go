package transport_test

import (
	"log/slog"
	"net/netip"

	"github.com/hike-vpn/hike/internal/transport"
)

// responder answers every IKE message from the address it was sent to.
type responder struct{}

func (responder) HandleIKE(p *transport.Packet) {
	// A real responder parses p.Data and queues work for its SA shard;
	// here the message is echoed. Local is the VIP the peer addressed.
	if err := p.Conn.SendIKE(p.Local, p.Remote, p.Data); err != nil {
		slog.Warn("reply failed", "to", p.Remote, "err", err)
	}
}

func (responder) HandleESP(p *transport.Packet) {}

// A node listens on the wildcard addresses and restricts each socket to the
// VIPs it currently owns; the cluster calls SetLocalAddrs again on takeover.
func Example() {
	socks, err := transport.ListenAll(transport.StandardConfigs())
	if err != nil {
		slog.Error("listen", "err", err)
		return
	}
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}
	for _, s := range socks {
		s.SetLocalAddrs(vips)
		go s.Serve(responder{})
	}
}
