package userspace

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tunDevice is a Linux TUN device in IFF_NO_PI mode: every read and write
// is exactly one IP packet. The file descriptor is non-blocking and
// registered with the Go runtime's poller, so Close wakes a blocked Read.
type tunDevice struct {
	*os.File
	name  string
	index int

	// readBatch state, owned by the single reader; kept here so that the
	// read callback is built once instead of allocated per call.
	rc     syscall.RawConn
	bufs   [][]byte
	sizes  []int
	n      int
	err    error
	readFn func(fd uintptr) bool
}

func openTUN(name string, mtu int) (*tunDevice, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("userspace: opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userspace: TUN name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userspace: creating TUN %q: %w", name, err)
	}
	t := &tunDevice{File: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name()}
	if err := t.configure(mtu); err != nil {
		t.Close()
		return nil, err
	}
	if t.rc, err = t.SyscallConn(); err != nil {
		t.Close()
		return nil, err
	}
	t.readFn = t.readStep
	return t, nil
}

// readBatch waits for the device to become readable and then reads packets
// until it has none left or bufs is full: one wake-up for a burst instead of
// one per packet.
func (t *tunDevice) readBatch(bufs [][]byte, sizes []int) (int, error) {
	t.bufs, t.sizes, t.n, t.err = bufs, sizes, 0, nil
	if err := t.rc.Read(t.readFn); err != nil {
		return 0, err
	}
	t.bufs, t.sizes = nil, nil
	if t.n > 0 {
		return t.n, nil // an error after some packets comes back next time
	}
	return 0, t.err
}

func (t *tunDevice) readStep(fd uintptr) bool {
	for t.n < len(t.bufs) {
		m, err := unix.Read(int(fd), t.bufs[t.n])
		switch err {
		case nil:
			t.sizes[t.n] = m
			t.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return t.n > 0 // nothing yet: let the poller wait
		default:
			t.err = err
			return true
		}
	}
	return true
}

// configure sets the MTU, brings the link up and learns its index, with
// the classic interface ioctls on a throwaway socket: no netlink needed.
func (t *tunDevice) configure(mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("userspace: configuring %s: %w", t.name, err)
	}
	defer unix.Close(s)
	ifr, _ := unix.NewIfreq(t.name)
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("userspace: setting MTU %d on %s: %w", mtu, t.name, err)
	}
	ifr, _ = unix.NewIfreq(t.name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("userspace: reading flags of %s: %w", t.name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("userspace: bringing %s up: %w", t.name, err)
	}
	ifr, _ = unix.NewIfreq(t.name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
		return fmt.Errorf("userspace: index of %s: %w", t.name, err)
	}
	t.index = int(ifr.Uint32())
	return nil
}
