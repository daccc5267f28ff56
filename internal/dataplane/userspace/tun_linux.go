package userspace

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tunDevice is a Linux TUN device in IFF_NO_PI mode with a virtio-net
// header before every packet (IFF_VNET_HDR), so that the kernel can hand
// over TCP super-packets (see offload.go). The file descriptor is
// non-blocking and registered with the Go runtime's poller, so Close wakes
// a blocked read.
type tunDevice struct {
	*os.File
	name    string
	index   int
	offload bool // TSO and checksum offload granted by the kernel

	// readBatch state, owned by the single reader; kept here so that the
	// read callback is built once instead of allocated per call.
	rc      syscall.RawConn
	bufs    [][]byte
	off     int
	sizes   []int
	n       int
	err     error
	readFn  func(fd uintptr) bool
	super   []byte // a TSO packet being cut into segments
	seg     segmenter
	cutting bool
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
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userspace: creating TUN %q: %w", name, err)
	}
	t := &tunDevice{File: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name()}
	// Without offloads the header is still there, just always empty.
	t.offload = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCSUM|tunFTSO4|tunFTSO6) == nil
	if err := t.configure(mtu); err != nil {
		t.Close()
		return nil, err
	}
	if t.rc, err = t.SyscallConn(); err != nil {
		t.Close()
		return nil, err
	}
	t.readFn = t.readStep
	t.super = make([]byte, vnetHdrLen+maxInner)
	return t, nil
}

// Read is not used by the backend, which calls readBatch, but keeps
// tunDevice a Device: it returns one packet without its header.
func (t *tunDevice) Read(p []byte) (int, error) {
	buf := make([]byte, len(p)+vnetHdrLen)
	bufs, sizes := [][]byte{buf}, []int{0}
	n, err := t.readBatch(bufs, vnetHdrLen, sizes)
	if n == 0 {
		return 0, err
	}
	return copy(p, buf[vnetHdrLen:vnetHdrLen+sizes[0]]), nil
}

// Write writes one packet, adding the header; the backend avoids the copy
// with writeHdr.
func (t *tunDevice) Write(p []byte) (int, error) {
	buf := make([]byte, vnetHdrLen+len(p))
	copy(buf[vnetHdrLen:], p)
	n, err := t.File.Write(buf)
	return max(n-vnetHdrLen, 0), err
}

// writeHdr writes the packet b[vnetHdrLen:], using b[:vnetHdrLen] for the
// header. The packet was authenticated by ESP, so the kernel is told its
// checksums need no verification (VIRTIO_NET_HDR_F_DATA_VALID).
func (t *tunDevice) writeHdr(b []byte) error {
	clear(b[:vnetHdrLen])
	b[0] = vnetFlagDataValid
	_, err := t.File.Write(b)
	return err
}

// readBatch waits for the device to become readable and then reads packets
// until it has none left or bufs is full: one wake-up for a burst instead of
// one per packet. Packet i lands at bufs[i][off:] (off must leave room for
// the header) and is sizes[i] long. TSO packets come back cut into
// segments, and partial checksums finished.
func (t *tunDevice) readBatch(bufs [][]byte, off int, sizes []int) (int, error) {
	t.bufs, t.off, t.sizes, t.n, t.err = bufs, off, sizes, 0, nil
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
		if t.cutting {
			t.cutSegments()
			continue
		}
		buf := t.bufs[t.n][t.off-vnetHdrLen:]
		m, err := unix.Read(int(fd), buf)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return t.n > 0 // nothing yet: let the poller wait
		default:
			t.err = err
			return true
		}
		if m < vnetHdrLen {
			continue
		}
		h := decodeVnetHdr(buf)
		pkt := buf[vnetHdrLen:m]
		if h.gsoType != vnetGSONone {
			// Cut from a copy: the segments go into the batch buffers,
			// starting with the one this packet was read into.
			n := copy(t.super, pkt)
			if t.seg.start(t.super[:n], h) {
				t.cutting = true
			}
			continue
		}
		if h.flags&vnetFlagNeedsCsum != 0 && !finishChecksum(pkt, h) {
			continue
		}
		t.sizes[t.n] = len(pkt)
		t.n++
	}
	return true
}

// cutSegments moves segments of the current TSO packet into the batch
// until it is full or the packet is done.
func (t *tunDevice) cutSegments() {
	for t.n < len(t.bufs) {
		if t.seg.done() {
			t.cutting = false
			return
		}
		m := t.seg.cut(t.bufs[t.n][t.off:])
		if m == 0 {
			t.cutting = false // cannot happen with maxInner buffers
			return
		}
		t.sizes[t.n] = m
		t.n++
	}
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
