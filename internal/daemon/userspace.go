package daemon

import (
	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/dataplane/userspace"
	"github.com/hike-vpn/hike/internal/transport"
)

// openUserspace starts the userspace ESP data plane over a TUN device. It
// sends ESP-in-UDP through the daemon's NAT-T sockets, which exist only once
// Run has opened them; until then there is no SA to send on.
func openUserspace(d *Daemon) (dataplane.Backend, error) {
	return userspace.New(userspace.Config{
		Name:         d.cfg.Dataplane.TUN,
		MTU:          d.cfg.Dataplane.TUNMTU,
		Logger:       d.log,
		SendESP:      d.sendESP,
		SendESPBatch: d.sendESPBatch,
		RawESP:       true,
		// Coalescing hands the kernel large TCP segments; the daemon ends
		// each receive batch (EndBatch), so nothing waits for the next one.
		CoalesceInbound: true,
	})
}

// sendESPBatch sends a batch of ESP-in-UDP packets, one sendmmsg per address
// family.
func (d *Daemon) sendESPBatch(ds []transport.Datagram) (int, error) {
	sent := 0
	var first error
	for start := 0; start < len(ds); {
		v4 := ds[start].Remote.Addr().Unmap().Is4()
		end := start + 1
		for end < len(ds) && ds[end].Remote.Addr().Unmap().Is4() == v4 {
			end++
		}
		if s := d.socket(v4, true); s == nil {
			if first == nil {
				first = errNoSocket
			}
		} else {
			n, err := s.Send(ds[start:end])
			sent += n
			if err != nil && first == nil {
				first = err
			}
		}
		start = end
	}
	return sent, first
}
