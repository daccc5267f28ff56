package xfrm

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelError is a failed netlink request: the errno and, when the kernel
// said more (extended ACK), its text, e.g. "Requested type not found".
type kernelError struct {
	op    string
	errno syscall.Errno
	text  string
}

func (e *kernelError) Error() string {
	if e.text != "" {
		return fmt.Sprintf("%s: %v (kernel: %s)", e.op, e.errno, e.text)
	}
	return fmt.Sprintf("%s: %v", e.op, e.errno)
}

func (e *kernelError) Unwrap() error { return e.errno }

// conn is a request/response NETLINK_XFRM socket. Requests are serialized:
// the kernel answers each one synchronously, so a mutex costs nothing and
// keeps replies in order.
type conn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

// inNetns runs fn on a thread that has joined the network namespace at
// path ("" = the caller's). The goroutine is dedicated so that a thread
// that cannot switch back is never reused: it stays locked and dies.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			res <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			res <- fmt.Errorf("network namespace: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- fmt.Errorf("joining network namespace %s: %w", path, err)
			runtime.UnlockOSThread()
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		res <- err
	}()
	return <-res
}

// socket opens a NETLINK_XFRM socket subscribed to groups (a bitmask).
func socket(groups uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
	if err != nil {
		return -1, fmt.Errorf("opening NETLINK_XFRM socket: %w", err)
	}
	// Extended ACKs carry the kernel's reason; capped ACKs keep errors short.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding NETLINK_XFRM socket: %w", err)
	}
	return fd, nil
}

func dial(netnsPath string) (*conn, error) {
	c := &conn{fd: -1, buf: make([]byte, 1<<16)}
	err := inNetns(netnsPath, func() error {
		fd, err := socket(0)
		c.fd = fd
		return err
	})
	if err != nil {
		return nil, err
	}
	// A reply that never comes (a kernel bug, a dead namespace) must not
	// hang the daemon's SA worker forever.
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return c, nil
}

func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// request sends msg and waits for its ACK or error. If reply is non-nil,
// the kernel's answer of type replyType is passed to it.
func (c *conn) request(op string, msg []byte, replyType uint16, reply func(body []byte) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return fmt.Errorf("%s: backend closed", op)
	}
	c.seq++
	seq := c.seq
	ne.PutUint32(msg[8:], seq)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for {
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // only the kernel may answer
		}
		var done bool
		var rerr error
		perr := parseNlmsgs(c.buf[:n], func(typ, flags uint16, mseq uint32, body []byte) bool {
			if mseq != seq {
				return true // a stale answer to a request that timed out
			}
			switch typ {
			case nlmsgError:
				errno, text, err := parseNlError(flags, body)
				switch {
				case err != nil:
					rerr = fmt.Errorf("%s: %w", op, err)
				case errno != 0:
					rerr = &kernelError{op: op, errno: syscall.Errno(errno), text: text}
				}
				done = true
			case nlmsgDone:
				done = true
			case replyType:
				if reply != nil {
					rerr = reply(body)
				}
				// GET requests are answered without an ACK.
				done = flags&nlmFMulti == 0
			}
			return !done
		})
		if perr != nil {
			return fmt.Errorf("%s: %w", op, perr)
		}
		if done {
			return rerr
		}
	}
}

// monitor receives XFRM multicast messages. Its file goes through Go's
// poller so that Close interrupts a blocked read.
type monitor struct {
	f  *os.File
	rc syscall.RawConn
}

func listen(netnsPath string, groups uint32) (*monitor, error) {
	fd := -1
	err := inNetns(netnsPath, func() error {
		var err error
		fd, err = socket(groups)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Expire bursts (many SAs created together) must not overflow it.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "xfrm-monitor")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &monitor{f: f, rc: rc}, nil
}

// read returns one datagram; ENOBUFS means the kernel dropped messages.
func (m *monitor) read(buf []byte) (int, error) {
	var n int
	var rerr error
	err := m.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}
