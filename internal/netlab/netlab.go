// Package netlab builds throw-away networks out of Linux network namespaces,
// veth pairs and bridges, and runs programs inside them. hike's interop and
// cluster tests use it, and so does `hike lab`: what the tests prove is what
// the lab shows.
//
// Everything a Lab creates carries its prefix and is removed by Close,
// including processes it started; the root namespace is never changed.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Lab is a set of namespaces and the processes running in them.
type Lab struct {
	prefix string
	mu     sync.Mutex
	nss    []*NS
	procs  []*Proc
	closed bool
}

// Check reports why no lab can be built here: not root, or no iproute2.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("netlab: iproute2 (ip) is not installed")
	}
	return nil
}

// New returns an empty lab whose names start with prefix. Interface names
// are limited to 15 characters, so keep the prefix short (say "hk3a").
func New(prefix string) (*Lab, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if len(prefix) > 6 {
		return nil, fmt.Errorf("netlab: prefix %q longer than 6 characters", prefix)
	}
	return &Lab{prefix: prefix}, nil
}

// Prefix returns the lab's name prefix.
func (l *Lab) Prefix() string { return l.prefix }

// NS is one network namespace of a lab.
type NS struct {
	Name string
	lab  *Lab
}

// AddNS creates namespace prefix+name with its loopback up. A leftover
// namespace of the same name (from a crashed run) is replaced.
func (l *Lab) AddNS(name string) (*NS, error) {
	full := l.prefix + name
	run(context.Background(), "ip", "netns", "del", full) // a leftover from a crashed run
	if _, err := run(context.Background(), "ip", "netns", "add", full); err != nil {
		return nil, err
	}
	ns := &NS{Name: full, lab: l}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return ns, nil
}

// Run runs a command in the namespace and returns its combined output.
func (n *NS) Run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return run(ctx, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Runf is Run with the command given as one string split on spaces.
func (n *NS) Runf(format string, a ...any) ([]byte, error) {
	return n.Run(strings.Fields(fmt.Sprintf(format, a...))...)
}

// Proc is a long-running process started in a namespace.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Out  *syncBuffer
	done chan struct{}
	err  error
}

// Start starts a program in the namespace. Its output is kept in Out (and
// copied to logFile if not empty). The lab kills it on Close.
func (n *NS) Start(name, logFile string, args ...string) (*Proc, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	p := &Proc{Name: name, Cmd: cmd, Out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		p.Out.tee = f
	}
	// Its own process group, so that Kill reaches whatever it spawned.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s: %w", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	n.lab.mu.Lock()
	n.lab.procs = append(n.lab.procs, p)
	n.lab.mu.Unlock()
	return p, nil
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Cmd.Process == nil {
		return errors.New("netlab: not started")
	}
	return syscall.Kill(-p.Cmd.Process.Pid, sig)
}

// Stop sends SIGTERM, waits up to timeout, then SIGKILL.
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	if !p.Exited() {
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end.
func (p *Proc) Wait() error { <-p.done; return p.err }

// Veth connects namespaces a and b with a veth pair named aIf and bIf and
// gives each end an address (an invalid prefix leaves that end without one).
func (l *Lab) Veth(a *NS, aIf string, aAddr netip.Prefix, b *NS, bIf string, bAddr netip.Prefix) error {
	tmp := l.prefix + "t" + fmt.Sprint(time.Now().UnixNano()%1e6)
	if _, err := a.Run("ip", "link", "add", aIf, "type", "veth", "peer", "name", tmp); err != nil {
		return err
	}
	if _, err := a.Run("ip", "link", "set", tmp, "netns", b.Name); err != nil {
		return err
	}
	if _, err := b.Run("ip", "link", "set", tmp, "name", bIf); err != nil {
		return err
	}
	for _, e := range []struct {
		ns   *NS
		ifn  string
		addr netip.Prefix
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.addr.IsValid() {
			if err := e.ns.AddAddr(e.ifn, e.addr); err != nil {
				return err
			}
		}
		if _, err := e.ns.Run("ip", "link", "set", e.ifn, "up"); err != nil {
			return err
		}
	}
	return nil
}

// AddAddr adds an address to an interface. IPv6 addresses skip duplicate
// address detection, which would otherwise hold them back for a second or
// two.
func (n *NS) AddAddr(ifname string, p netip.Prefix) error {
	args := []string{"ip", "addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	_, err := n.Run(args...)
	return err
}

// Bridge creates a bridge in n (with an address if addr is valid).
func (n *NS) Bridge(name string, addr netip.Prefix) error {
	if _, err := n.Run("ip", "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	if addr.IsValid() {
		if err := n.AddAddr(name, addr); err != nil {
			return err
		}
	}
	_, err := n.Run("ip", "link", "set", name, "up")
	return err
}

// Attach connects namespace c to bridge br in hub with a veth pair: the
// hub end is hubIf, the client end cIf with address addr.
func (l *Lab) Attach(hub *NS, br, hubIf string, c *NS, cIf string, addr netip.Prefix) error {
	if err := l.Veth(hub, hubIf, netip.Prefix{}, c, cIf, addr); err != nil {
		return err
	}
	_, err := hub.Run("ip", "link", "set", hubIf, "master", br)
	return err
}

// Close kills the lab's processes and deletes its namespaces. It is safe to
// call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, nss := l.procs, l.nss
	l.mu.Unlock()
	for _, p := range procs {
		p.Stop(3 * time.Second)
	}
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		// Processes that the lab did not start may still hold the
		// namespace; kill them so the namespace really goes away.
		if out, err := run(context.Background(), "ip", "netns", "pids", nss[i].Name); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				var n int
				fmt.Sscan(pid, &n)
				if n > 1 {
					syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		if _, err := run(context.Background(), "ip", "netns", "del", nss[i].Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// syncBuffer collects a process's output for tests and reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee *os.File
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tee != nil {
		b.tee.Write(p)
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
