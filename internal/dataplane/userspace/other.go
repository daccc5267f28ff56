//go:build !linux

package userspace

import (
	"errors"
	"net/netip"
	"os"
)

// The userspace data plane needs Linux TUN devices, rtnetlink and raw
// sockets; elsewhere New fails, so that the rest of hike still builds.

var errUnsupported = errors.New("userspace: the userspace data plane needs Linux")

type tunDevice struct {
	*os.File
	name    string
	index   int
	offload bool
}

func openTUN(string, int) (*tunDevice, error) { return nil, errUnsupported }
func (t *tunDevice) writeHdr([]byte) error    { return errUnsupported }

type router struct{}

func newRouter(int) (*router, error)                         { return nil, errUnsupported }
func (r *router) add(netip.Prefix, netip.Addr) (bool, error) { return false, errUnsupported }
func (r *router) del(netip.Prefix) error                     { return errUnsupported }
func (r *router) close()                                     {}

type rawESP struct{}
type rawConn struct{}

func openRawESP() (*rawESP, error)                          { return nil, errUnsupported }
func (r *rawESP) conns() []*rawConn                         { return nil }
func (r *rawESP) close()                                    {}
func (r *rawESP) send(netip.Addr, netip.Addr, []byte) error { return errUnsupported }
func (c *rawConn) readLoop(*Backend)                        {}
