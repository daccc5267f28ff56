package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// env is a running lab: what the steps build and what close removes.
type env struct {
	o        Options
	progress io.Writer
	lab      *netlab.Lab
	dir      string // temporary: configs, sockets, logs
	gw       *netlab.NS
	hike     *netlab.Proc
	ctl      *control.Client
	clients  []*client
	cl       *cluster // the failover scenario's nodes and simulated clients
	claimed  bool     // a record under claimDir names this run
	// inflight counts goroutines that may still run commands after a step
	// gave up on them (interrupted): close waits for them to notice that
	// their processes are gone.
	inflight sync.WaitGroup
}

type client struct {
	name         string
	ns           *netlab.NS
	outer, inner netip.Addr
	swan         *swan.Daemon
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(e.progress, "lab: "+format+"\n", a...)
}

// runSteps runs steps in order and stops at the first error or when ctx
// ends; each step is timed in the report.
func (e *env) runSteps(ctx context.Context, steps []step, r *Report) error {
	for _, s := range steps {
		if ctx.Err() != nil {
			return fmt.Errorf("before %s: %w", s.name, context.Cause(ctx))
		}
		t0 := time.Now()
		err := s.run(ctx, e, r)
		if ctx.Err() != nil {
			// Whatever the step made of it, the cause is the interruption
			// (with signal.NotifyContext: which signal).
			err = context.Cause(ctx)
		}
		st := Step{Name: s.name, DurationMS: time.Since(t0).Milliseconds()}
		if err != nil {
			st.Error = err.Error()
		}
		r.Steps = append(r.Steps, st)
		if err != nil {
			e.logf("%-10s failed after %s: %v", s.name, ms(st.DurationMS), err)
			return fmt.Errorf("%s: %w", s.name, err)
		}
		e.logf("%-10s done in %s", s.name, ms(st.DurationMS))
	}
	return nil
}

// parallel runs f for 0..n-1 concurrently and returns when all are done or
// ctx ends. f must not touch shared state: after an interruption it may
// still be running while the lab is torn down.
func (e *env) parallel(ctx context.Context, n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		e.inflight.Add(1)
		go func() {
			defer e.inflight.Done()
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return errors.Join(errs...)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close removes everything the run made. A failed run first keeps the end
// of each daemon's log in the report, since the directory goes too.
func (e *env) close(r *Report) {
	if !r.OK && !r.Interrupted {
		e.collectLogs(r)
	}
	if e.cl != nil && e.cl.serving != nil {
		e.cl.serving.end() // a failed step leaves it polling
	}
	if e.lab != nil {
		if err := e.lab.Close(); err != nil {
			e.logf("cleanup: %v", err)
		}
		// Commands a step stopped waiting for end once their namespace and
		// daemons are gone; none outlives this.
		waited := make(chan struct{})
		go func() { e.inflight.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(30 * time.Second):
			e.logf("cleanup: commands still running after 30s")
		}
		for _, ns := range e.leftovers() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				e.logf("cleanup: ip netns del %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
			}
		}
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			e.logf("cleanup: %v", err)
		}
	}
	if e.claimed {
		release(e.o.Prefix)
	}
	if e.lab != nil {
		e.logf("removed namespaces %s*, their processes and %s", e.o.Prefix, e.dir)
	}
}

// leftovers lists namespaces carrying the lab's prefix.
func (e *env) leftovers() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	return labNamespaces(string(out), e.o.Prefix)
}

// labNamespaces picks the namespaces starting with prefix from the output of
// `ip netns list` (which may append "(id: N)" to a name).
func labNamespaces(list, prefix string) []string {
	var nss []string
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			nss = append(nss, f[0])
		}
	}
	return nss
}

func (e *env) collectLogs(r *Report) {
	logs := map[string]string{}
	if e.hike != nil {
		logs["hike"] = lastLines(e.hike.Out.String(), 30)
	}
	if e.cl != nil {
		for _, n := range append(slices.Clone(e.cl.nodes), e.cl.witness) {
			if n != nil && n.proc != nil {
				logs["hike "+n.id] = lastLines(n.proc.Out.String(), 20)
			}
		}
		// A group whose summary made it into the report said all it had.
		for _, g := range e.cl.groups {
			name := fmt.Sprintf("l%d", g.i)
			if g.proc != nil && (r.Failover == nil || !slices.ContainsFunc(r.Failover.Clients, func(c LoadClients) bool { return c.Group == name })) {
				logs["hike load "+name] = lastLines(g.proc.Out.String(), 10)
			}
		}
	}
	for _, c := range e.clients {
		if c.swan != nil {
			logs["charon "+c.name] = lastLines(c.swan.Log(), 15)
		}
	}
	if len(logs) > 0 {
		r.Logs = logs
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// hold keeps the lab up for exploration until ctx ends.
func (e *env) hold(ctx context.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "lab is up; explore it from another shell, press Ctrl-C here to tear it down:\n")
	if e.gw != nil {
		fmt.Fprintf(&b, "  ip netns exec %s bash    # the gateway: hike at %s, protected network %s\n", e.gw.Name, gwOuter, gwInner)
		fmt.Fprintf(&b, "  %s sa list --socket %s\n", e.o.Hike, filepath.Join(e.dir, "control.sock"))
	}
	if e.cl != nil {
		for _, n := range e.cl.nodes {
			state := ""
			if n.killed {
				state = " (killed)"
			}
			fmt.Fprintf(&b, "  ip netns exec %s bash    # %s%s: %s, VIP %s\n", n.ns.Name, n.id, state, nodeAddr(n.i), n.vip.Addr())
			if !n.killed {
				fmt.Fprintf(&b, "  %s cluster status --socket %s\n", e.o.Hike, nodeSocket(e.dir, n.i))
			}
		}
		if w := e.cl.witness; w != nil {
			fmt.Fprintf(&b, "  ip netns exec %s bash    # the witness: %s\n", w.ns.Name, witnessAddr)
		}
		fmt.Fprintf(&b, "  logs and configurations: %s\n", e.dir)
	}
	for _, c := range e.clients {
		fmt.Fprintf(&b, "  ip netns exec %s bash    # client %s: ping -I %s %s\n", c.ns.Name, c.name, c.inner, gwInner)
		if c.swan != nil {
			fmt.Fprintf(&b, "  swanctl --list-sas --uri unix://%s\n", filepath.Join(c.swan.Dir, "charon.vici"))
		}
	}
	io.WriteString(e.progress, b.String())
	<-ctx.Done()
	e.logf("tearing down")
}
