// Package lab runs hike's demonstration scenarios on one machine: it builds
// network namespaces, runs a hike gateway and clients in them, drives a
// scenario, reports what happened and removes everything it made, also
// when the run fails or is interrupted. `hike lab` is its command line.
//
// A scenario is a sequence of named steps over a running lab. "failover",
// the default, is the mission on one machine: a cluster of hike nodes,
// simulated clients (`hike load`) and optionally strongSwan ones spread
// over the nodes' VIPs, steady DPD, the busiest node killed, a survivor
// taking over and resynchronising every SA. "tunnel" brings up strongSwan
// clients against one gateway, pings through each tunnel and watches DPD.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// Client kinds.
const (
	ClientAuto       = "auto"       // the best kind installed
	ClientStrongSwan = "strongswan" // strongSwan's charon with kernel-libipsec
)

// Options configure one run.
type Options struct {
	Scenario string // default DefaultScenario
	// Clients is the number of clients: strongSwan ones in the tunnel
	// scenario (default 1), simulated ones in the failover scenario
	// (default 300, spread over the nodes' VIPs).
	Clients    int
	ClientKind string // ClientAuto (default) or ClientStrongSwan; tunnel only
	// DPD is, in the tunnel scenario, how long to watch DPD (default 4s);
	// in the failover scenario, the DPD delay of clients and nodes
	// (default 2s).
	DPD   time.Duration
	Pings int // echo requests per client, default 5; tunnel only
	// Nodes is the failover scenario's number of hike nodes: 3 (default)
	// to 7 voters in all, a witness counting as one.
	Nodes int
	// Witness adds a `hike witness` voter to the failover scenario's
	// cluster; with it Nodes defaults to 2, the pair a witness is for.
	Witness bool
	// StrongSwan adds strongSwan clients to the failover scenario; they
	// ping through their tunnels across the kill.
	StrongSwan int
	// KillAfter is the failover scenario's steady DPD period between every
	// client being up and the kill, default 2 DPD delays.
	KillAfter time.Duration
	// Kill chooses the node the failover scenario kills: KillBusiest
	// (default), KillLeader, KillFollower or a node ID ("node2").
	Kill string
	// NoRFC6311 has the simulated clients not advertise RFC 6311: the
	// cluster then replicates their counters instead, and a takeover
	// cannot resynchronise them.
	NoRFC6311 bool
	// Hike is the hike binary run as the gateway; default the running
	// executable, so that `hike lab` shows the very build that runs it.
	Hike string
	// Prefix starts the name of every namespace; default "hkl" and three
	// characters from the process ID. At most 6 characters.
	Prefix string
	// Keep leaves the lab up after the scenario until ctx is done.
	Keep bool
	// Progress receives one line per step as the run goes; nil discards.
	Progress io.Writer
	// Up, if set, is called with the report once the scenario has run and
	// before the lab is torn down (with Keep: before waiting for ctx).
	Up func(*Report)
}

// Scenario is one story the lab can tell.
type Scenario struct {
	Name        string
	Description string
	summary     func(Options) string // one line on what this run does
	steps       []step
}

type step struct {
	name string
	run  func(ctx context.Context, e *env, r *Report) error
}

// DefaultScenario is what `hike lab` runs without --scenario.
const DefaultScenario = "failover"

// Scenarios lists the scenarios in the order `hike lab --help` shows them.
func Scenarios() []*Scenario { return []*Scenario{failoverScenario, tunnelScenario} }

func lookup(name string) (*Scenario, error) {
	var names []string
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("lab: unknown scenario %q (have: %s)", name, strings.Join(names, ", "))
}

// installHint names the Debian packages strongSwan clients need.
const installHint = "apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins"

// Check reports what is missing on this machine to run the lab with o's
// scenario and clients, with what to install. The failover scenario with
// simulated clients needs nothing but root and iproute2.
func Check(o Options) error {
	if err := netlab.Check(); err != nil {
		return fmt.Errorf("%w; the lab runs as root, with iproute2 installed", err)
	}
	if o.Scenario == "" || o.Scenario == failoverScenario.Name {
		if o.StrongSwan == 0 {
			return nil
		}
		return checkSwan()
	}
	switch o.ClientKind {
	case "", ClientAuto, ClientStrongSwan:
		// The tunnel scenario pings through real tunnels: strongSwan is
		// its only client kind.
		return checkSwan()
	default:
		return fmt.Errorf("lab: unknown client kind %q (have: %s)", o.ClientKind, ClientStrongSwan)
	}
}

func checkSwan() error {
	if err := swan.Check(); err != nil {
		// swan's own hint names fewer packages than the lab needs.
		what, _, _ := strings.Cut(err.Error(), " (apt-get")
		return fmt.Errorf("strongSwan clients cannot run: %s\ninstall strongSwan with:\n  %s", what, installHint)
	}
	if _, err := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-curve25519.so"); err != nil {
		return fmt.Errorf("strongSwan's curve25519 plugin is missing\ninstall strongSwan with:\n  %s", installHint)
	}
	return nil
}

// ParseClients reads the value of `hike lab --clients`: a number of
// clients of the scenario's default kind ("3"), a kind with one client
// ("strongswan"), or both ("strongswan:3").
func ParseClients(s string) (kind string, n int, err error) {
	kind, count, hasCount := strings.Cut(s, ":")
	if !hasCount {
		if v, err := strconv.Atoi(s); err == nil {
			kind, count, hasCount = ClientAuto, strconv.Itoa(v), true
		}
	}
	switch kind {
	case ClientAuto, ClientStrongSwan:
	default:
		return "", 0, fmt.Errorf("clients %q: want N, KIND or KIND:N with KIND %s", s, ClientStrongSwan)
	}
	// Which scenario the number is for is not known here: the bound is
	// the largest any scenario takes for the kind (see withDefaults).
	limit := maxSimulated
	if kind == ClientStrongSwan {
		limit = maxClients
	}
	n = 1
	if hasCount {
		if n, err = strconv.Atoi(count); err != nil || n < 1 || n > limit {
			return "", 0, fmt.Errorf("clients %q: the number of clients is 1 to %d", s, limit)
		}
	}
	return kind, n, nil
}

// ErrInterrupted is returned (wrapped) when ctx ended the run before the
// scenario finished.
var ErrInterrupted = errors.New("interrupted")

// Run runs a scenario and returns its report; the lab is gone when Run
// returns, whatever happened. The error is nil exactly when the report says
// OK; it wraps ErrInterrupted when ctx ended the run. Invalid options or a
// missing prerequisite (see Check) fail before anything is built, without
// a report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	sc, err := lookup(o.Scenario)
	if err != nil {
		return nil, err
	}
	if err := Check(o); err != nil {
		return nil, err
	}
	r := &Report{Scenario: sc.Name, Started: time.Now().UTC(),
		Summary: sc.summary(o)}
	e := &env{o: o, progress: o.Progress}
	defer func() {
		t0 := time.Now()
		e.close(r)
		r.Steps = append(r.Steps, Step{Name: "cleanup", DurationMS: time.Since(t0).Milliseconds()})
		r.DurationMS = time.Since(r.Started).Milliseconds()
	}()
	runErr := e.runSteps(ctx, sc.steps, r)
	r.OK = runErr == nil
	if runErr != nil {
		r.Error = runErr.Error()
		if ctx.Err() != nil {
			r.Interrupted = true
			runErr = fmt.Errorf("%w: %v", ErrInterrupted, runErr)
		}
	}
	if ctx.Err() == nil {
		r.DurationMS = time.Since(r.Started).Milliseconds()
		if o.Up != nil {
			o.Up(r)
		}
		if o.Keep {
			e.hold(ctx)
		}
	}
	return r, runErr
}

func (o Options) withDefaults() (Options, error) {
	if o.Scenario == "" {
		o.Scenario = DefaultScenario
	}
	var err error
	switch o.Scenario {
	case failoverScenario.Name:
		o, err = o.failoverDefaults()
	default:
		o, err = o.tunnelDefaults()
	}
	if err != nil {
		return o, err
	}
	if o.Hike == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("lab: cannot find the hike binary to run as the gateway: %w", err)
		}
		o.Hike = exe
	}
	if o.Prefix == "" {
		o.Prefix = "hkl" + pidTag(os.Getpid())
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o, nil
}

func (o Options) tunnelDefaults() (Options, error) {
	if o.Nodes != 0 || o.Witness || o.StrongSwan != 0 || o.KillAfter != 0 || o.NoRFC6311 || o.Kill != "" {
		return o, errors.New("lab: nodes, witness, extra strongSwan clients, the kill and the RFC 6311 switch (--nodes, --witness, --strongswan, --kill, --kill-after, --rfc6311) are the failover scenario's")
	}
	if o.Clients == 0 {
		o.Clients = 1
	}
	if o.Clients < 0 || o.Clients > maxClients {
		return o, fmt.Errorf("lab: %d clients: between 1 and %d", o.Clients, maxClients)
	}
	if o.ClientKind == "" || o.ClientKind == ClientAuto {
		o.ClientKind = ClientStrongSwan
	}
	if o.DPD == 0 {
		o.DPD = 4 * time.Second
	}
	if o.DPD < 2*time.Second {
		return o, fmt.Errorf("lab: DPD period %v: at least 2s, so that each side can probe", o.DPD)
	}
	if o.Pings == 0 {
		o.Pings = 5
	}
	return o, nil
}

func (o Options) failoverDefaults() (Options, error) {
	if o.ClientKind == ClientStrongSwan {
		return o, errors.New("lab: the failover scenario's --clients are simulated; add strongSwan clients with --strongswan N")
	}
	o.ClientKind = ""
	voters := 0
	if o.Witness {
		voters = 1
	}
	if o.Nodes == 0 {
		o.Nodes = minVoters - voters
	}
	if v := o.Nodes + voters; o.Nodes < 2 || v < minVoters || v > maxVoters {
		return o, fmt.Errorf("lab: %d nodes and %d witness: a cluster has %d to %d voters, at least 2 of them nodes", o.Nodes, voters, minVoters, maxVoters)
	}
	if o.Clients == 0 {
		o.Clients = 300
	}
	if o.Clients < 0 || o.Clients > maxSimulated {
		return o, fmt.Errorf("lab: %d simulated clients: between 1 and %d", o.Clients, maxSimulated)
	}
	if o.StrongSwan < 0 || o.StrongSwan > maxClients {
		return o, fmt.Errorf("lab: %d strongSwan clients: between 0 and %d", o.StrongSwan, maxClients)
	}
	if o.DPD == 0 {
		o.DPD = 2 * time.Second
	}
	if o.DPD < time.Second || o.DPD%time.Second != 0 {
		return o, fmt.Errorf("lab: DPD delay %v: whole seconds, at least 1s", o.DPD)
	}
	if o.KillAfter == 0 {
		o.KillAfter = 2 * o.DPD
	}
	switch o.Kill {
	case "", KillBusiest, KillLeader, KillFollower:
	default:
		n, err := strconv.Atoi(strings.TrimPrefix(o.Kill, "node"))
		if !strings.HasPrefix(o.Kill, "node") || err != nil || n < 1 || n > o.Nodes || o.Kill != nodeID(n) {
			return o, fmt.Errorf("lab: kill %q: %s, %s, %s or node1 to node%d", o.Kill, KillBusiest, KillLeader, KillFollower, o.Nodes)
		}
	}
	if o.KillAfter < 0 {
		return o, fmt.Errorf("lab: kill after %v: not negative", o.KillAfter)
	}
	return o, nil
}

// pidTag is three base-36 characters of pid: concurrent labs get distinct
// namespace names, and a lab that was killed outright is replaced by the
// next run that happens to share the tag.
func pidTag(pid int) string {
	s := strconv.FormatInt(int64(pid%(36*36*36)), 36)
	return strings.Repeat("0", 3-len(s)) + s
}
