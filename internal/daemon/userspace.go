package daemon

import (
	"errors"

	"github.com/hike-vpn/hike/internal/dataplane"
)

// openUserspace starts the userspace ESP data plane over a TUN device.
func openUserspace(d *Daemon) (dataplane.Backend, error) {
	return nil, errors.New("userspace data plane: not built yet")
}
