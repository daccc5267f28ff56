package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	dp "github.com/hike-vpn/hike/internal/dataplane"
	"golang.org/x/sys/unix"
)

// Probe reports whether the kernel can run this data plane: it creates a
// scratch network namespace, adds throw-away ESP SAs there (AES-CBC with
// HMAC-SHA-256, which needs only ESP and the crypto every kernel builds
// in, then AES-GCM) and lets the namespace disappear with them. A kernel
// without ESP yields an error wrapping dp.ErrNoKernelESP and the kernel's
// own answer.
//
// Creating the namespace needs CAP_SYS_ADMIN. A daemon that has only
// CAP_NET_ADMIN probes in its own namespace instead, with SAs between
// TEST-NET-1 addresses (RFC 5737) that no policy refers to, deleted at once.
func Probe() error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			res <- fmt.Errorf("xfrm probe: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, syscall.EPERM) {
				res <- probeHere()
			} else {
				res <- fmt.Errorf("xfrm probe: creating a scratch network namespace: %w", err)
			}
			runtime.UnlockOSThread()
			return
		}
		err = probeHere()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and exits with this goroutine
		res <- err
	}()
	return <-res
}

// probeHere runs inside the scratch namespace.
func probeHere() error {
	fd, err := socket(0)
	if err != nil {
		if errors.Is(err, syscall.EPROTONOSUPPORT) {
			return fmt.Errorf("kernel has no XFRM netlink interface (CONFIG_XFRM_USER): %w", err)
		}
		return err
	}
	c := &conn{fd: fd, buf: make([]byte, 1<<16)}
	defer c.close()
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tries := []struct {
		name string
		p    saParams
	}{
		{"AES-CBC/HMAC-SHA-256", saParams{alg: dp.Algorithm{Encr: dp.EncrAESCBC, EncrKeyBits: 128, Integ: dp.IntegHMACSHA2_256_128},
			encrKey: make([]byte, 16), integKey: make([]byte, 32)}},
		{"AES-GCM-16", saParams{alg: dp.Algorithm{Encr: dp.EncrAESGCM16, EncrKeyBits: 128}, encrKey: make([]byte, 20)}},
	}
	for i, t := range tries {
		// SPIs 1-255 are reserved (RFC 4303 §2.1), so no negotiated SA
		// can collide when the probe runs in the daemon's own namespace.
		t.p.src, t.p.dst, t.p.spi, t.p.window = src, dst, uint32(0xf0+i), 32
		m, err := newSAMsg(&t.p)
		if err != nil {
			return err
		}
		err = c.request("adding a test "+t.name+" ESP SA", m, 0, nil)
		switch {
		case err == nil:
			// The namespace takes the SA with it; delete anyway so that
			// nothing depends on when the kernel frees it.
			_ = c.request("deleting the test SA", delSAMsg(dst, t.p.spi), 0, nil)
		case errors.Is(err, syscall.EPROTONOSUPPORT):
			return fmt.Errorf("%w: %w", dp.ErrNoKernelESP, err)
		case errors.Is(err, syscall.ENOSYS), errors.Is(err, syscall.ENOENT):
			return fmt.Errorf("kernel ESP lacks the crypto for %s: %w", t.name, err)
		default:
			return err
		}
	}
	return nil
}
