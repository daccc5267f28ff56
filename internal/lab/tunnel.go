package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// tunnelScenario: clients establish tunnels to one hike gateway, ping the
// protected network through them, and stay quiet long enough for DPD to
// run both ways.
var tunnelScenario = &Scenario{
	Name:        "tunnel",
	Description: "strongSwan clients establish IKEv2 tunnels to one hike gateway, ping through them and run DPD",
	summary: func(o Options) string {
		return fmt.Sprintf("tunnel: %d %s client%s against one hike gateway, %d pings each, %s of DPD",
			o.Clients, o.ClientKind, plural(o.Clients), o.Pings, o.DPD)
	},
	steps: []step{
		{"network", buildNetwork},
		{"gateway", startGateway},
		{"clients", startClients},
		{"establish", establish},
		{"ping", ping},
		{"dpd", watchDPD},
		{"check", check},
	},
}

// buildNetwork makes the namespaces: the gateway with a bridge for the
// clients' outer addresses, and one namespace per client on that bridge.
func buildNetwork(ctx context.Context, e *env, r *Report) error {
	if err := e.begin(); err != nil {
		return err
	}
	var err error
	if e.gw, err = e.lab.AddNS("gw"); err != nil {
		return err
	}
	if err := e.gw.Bridge("br0", netip.PrefixFrom(gwOuter, outerBits)); err != nil {
		return err
	}
	if err := e.gw.AddAddr("lo", netip.PrefixFrom(gwInner, 32)); err != nil {
		return err
	}
	r.Gateway = Gateway{Namespace: e.gw.Name, Outer: gwOuter.String(), Protected: protectedNet.String(), Dataplane: "userspace"}
	for i := 1; i <= e.o.Clients; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := &client{name: fmt.Sprintf("c%d", i)}
		c.outer, c.inner = clientAddrs(i)
		if c.ns, err = e.lab.AddNS(c.name); err != nil {
			return err
		}
		if err := e.lab.Attach(e.gw, "br0", fmt.Sprintf("v%d", i), c.ns, "eth0", netip.PrefixFrom(c.outer, outerBits)); err != nil {
			return err
		}
		if err := c.ns.AddAddr("lo", netip.PrefixFrom(c.inner, 32)); err != nil {
			return err
		}
		e.clients = append(e.clients, c)
		r.Clients = append(r.Clients, Client{Name: c.name, Namespace: c.ns.Name, Kind: e.o.ClientKind,
			Outer: c.outer.String(), Inner: c.inner.String()})
	}
	return nil
}

// startGateway runs `hike serve` in the gateway namespace and waits until
// its control socket answers.
func startGateway(ctx context.Context, e *env, r *Report) error {
	psk, err := newPSK()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.dir, "lab.psk"), []byte(psk+"\n"), 0o600); err != nil {
		return err
	}
	// hike probes after one DPD delay of silence; half the period leaves
	// room for probes both ways within it.
	cfg := filepath.Join(e.dir, "hike.yaml")
	if err := os.WriteFile(cfg, []byte(hikeConfig(e.dir, dpdDelay(e.o.DPD))), 0o600); err != nil {
		return err
	}
	if e.hike, err = e.gw.Start("hike", filepath.Join(e.dir, "hike.log"), e.o.Hike, "serve", "-c", cfg); err != nil {
		return err
	}
	e.ctl = control.NewClient(filepath.Join(e.dir, "control.sock"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := e.ctl.List(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if e.hike.Exited() {
			return fmt.Errorf("hike serve exited: %s", lastLines(e.hike.Out.String(), 5))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hike serve did not answer on its control socket within 15s: %v", err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// dpdDelay is the silence after which each side probes: a third of the
// period, so that several checks fit in it whichever side goes first.
func dpdDelay(period time.Duration) time.Duration {
	return max(time.Second, (period / 3).Truncate(time.Second))
}

func startClients(ctx context.Context, e *env, r *Report) error {
	psk, err := os.ReadFile(filepath.Join(e.dir, "lab.psk"))
	if err != nil {
		return err
	}
	daemons := make([]*swan.Daemon, len(e.clients))
	err = e.parallel(ctx, len(e.clients), func(i int) error {
		c := e.clients[i]
		d, err := swan.Start(c.ns, filepath.Join(e.dir, c.name), swanConfig(i+1, gwOuter, tunnelClientID(i+1), ikeProposal, strings.TrimSpace(string(psk)), dpdDelay(e.o.DPD)),
			swan.Options{LibIPsec: true})
		daemons[i] = d
		if err != nil {
			return fmt.Errorf("client %s: %w", c.name, err)
		}
		return nil
	})
	if ctx.Err() == nil {
		for i, d := range daemons {
			e.clients[i].swan = d
		}
	}
	return err
}

// establish has every client initiate its tunnel at once, as clients of a
// real gateway would after an outage.
func establish(ctx context.Context, e *env, r *Report) error {
	if err := e.parallel(ctx, len(e.clients), func(i int) error {
		if err := e.clients[i].swan.Initiate("net"); err != nil {
			return fmt.Errorf("client %s: %w", e.clients[i].name, err)
		}
		return nil
	}); err != nil {
		return err
	}
	return e.readSAs(ctx, r)
}

// errNoSA says a client lists no IKE SA.
var errNoSA = errors.New("lists no IKE SA")

// readSAs fills each client's IKE and Child SA from strongSwan's listing.
// A client without an IKE SA gets an empty one, and the error names it.
func (e *env) readSAs(ctx context.Context, r *Report) error {
	sas := make([]rawSA, len(e.clients))
	err := e.parallel(ctx, len(e.clients), func(i int) error {
		out, err := e.clients[i].swan.Swanctl("--list-sas", "--raw")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(line, "list-sa event "); ok {
				sas[i] = parseRawSA(rest)
				return nil
			}
		}
		return fmt.Errorf("client %s %w", e.clients[i].name, errNoSA)
	})
	if err != nil && ctx.Err() != nil {
		return err
	}
	for i, sa := range sas {
		if sa.ike == nil {
			sa = rawSA{ike: map[string]string{}, child: map[string]string{}}
		}
		c := &r.Clients[i]
		c.IKE.State, c.IKE.SPIi, c.IKE.SPIr = sa.ike["state"], sa.ike["initiator-spi"], sa.ike["responder-spi"]
		c.IKE.Proposal = proposal(sa.ike)
		ch := sa.child
		c.Child = ChildSA{Name: ch["name"], Proposal: proposal(ch), SPIIn: ch["spi-in"], SPIOut: ch["spi-out"],
			PacketsIn: atou(ch["packets-in"]), PacketsOut: atou(ch["packets-out"]),
			BytesIn: atou(ch["bytes-in"]), BytesOut: atou(ch["bytes-out"])}
	}
	return err
}

// ping sends echo requests from each client's inner address to the
// protected network: they can only get there, and back, through the tunnel.
func ping(ctx context.Context, e *env, r *Report) error {
	outs := make([]string, len(e.clients))
	err := e.parallel(ctx, len(e.clients), func(i int) error {
		c := e.clients[i]
		out, err := c.ns.Run("ping", "-n", "-q", "-c", strconv.Itoa(e.o.Pings), "-i", "0.2", "-W", "2",
			"-I", c.inner.String(), gwInner.String())
		outs[i] = string(out)
		// ping exits 1 when replies are missing; the counts tell.
		var ee interface{ ExitCode() int }
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			return fmt.Errorf("client %s: %w", c.name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, out := range outs {
		p := Ping{From: e.clients[i].inner.String(), To: gwInner.String()}
		parsePing(out, &p)
		r.Clients[i].Ping = p
	}
	return nil
}

// watchDPD keeps the tunnels silent for the DPD period and counts the
// liveness checks each client's charon logged meanwhile.
func watchDPD(ctx context.Context, e *env, r *Report) error {
	offsets := make([]int, len(e.clients))
	for i, c := range e.clients {
		offsets[i] = len(c.swan.Log())
	}
	t0 := time.Now()
	if err := sleep(ctx, e.o.DPD); err != nil {
		return err
	}
	period := time.Since(t0).Milliseconds()
	// A check sent just before the end deserves its answer: wait a little
	// for responses still on their way.
	grace := time.Now().Add(3 * time.Second)
	for {
		pending := 0
		for i, c := range e.clients {
			d := DPD{PeriodMS: period}
			if log := c.swan.Log(); len(log) >= offsets[i] {
				parseDPD(log[offsets[i]:], &d)
			}
			r.Clients[i].DPD = d
			pending += d.Unanswered
		}
		if pending == 0 || time.Now().After(grace) {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// check reads both sides' SAs after the DPD period and judges each client.
func check(ctx context.Context, e *env, r *Report) error {
	before := make([]IKESA, len(r.Clients))
	for i := range r.Clients {
		before[i] = r.Clients[i].IKE
	}
	if err := e.readSAs(ctx, r); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sas, err := e.ctl.List(cctx)
	if err != nil {
		return fmt.Errorf("hike's SAs: %w", err)
	}
	gatewayStats(sas, &r.Gateway)
	var failed []string
	for i := range r.Clients {
		c := &r.Clients[i]
		c.DPD.SameIKESA = c.IKE.SPIi != "" && c.IKE.SPIi == before[i].SPIi && c.IKE.SPIr == before[i].SPIr
		c.IKE.OnGateway = onGateway(sas, c.IKE)
		judge(c, e.o.Pings)
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("client%s %s: see the report", plural(len(failed)), strings.Join(failed, ", "))
	}
	return nil
}

func gatewayStats(sas []ike.SAInfo, g *Gateway) {
	g.IKESAs, g.ChildSAs, g.DPDSent, g.DPDAnswered = len(sas), 0, 0, 0
	for _, sa := range sas {
		g.ChildSAs += len(sa.Children)
		g.DPDSent += sa.Stats.DPDSent
		g.DPDAnswered += sa.Stats.DPDAnswered
	}
}

func onGateway(sas []ike.SAInfo, c IKESA) bool {
	for _, sa := range sas {
		if c.SPIi != "" && strings.EqualFold(sa.SPIi, c.SPIi) && strings.EqualFold(sa.SPIr, c.SPIr) {
			return true
		}
	}
	return false
}

// judge decides whether a client's run showed a working tunnel: established
// on both sides, every ping answered and counted as ESP by the client, at
// least one DPD exchange and no unanswered one, the same IKE SA throughout.
func judge(c *Client, pings int) {
	c.Problems = nil
	if c.IKE.State != "ESTABLISHED" {
		c.Problems = append(c.Problems, fmt.Sprintf("IKE SA state %q, want ESTABLISHED", c.IKE.State))
	}
	if !c.IKE.OnGateway {
		c.Problems = append(c.Problems, "hike does not list the client's IKE SA")
	}
	if c.Ping.Sent != pings || c.Ping.Received != pings {
		c.Problems = append(c.Problems, fmt.Sprintf("%d of %d pings answered", c.Ping.Received, pings))
	}
	if c.Child.PacketsOut < uint64(pings) || c.Child.PacketsIn < uint64(pings) {
		c.Problems = append(c.Problems, fmt.Sprintf("strongSwan counted %d ESP packets out and %d in, want at least %d each",
			c.Child.PacketsOut, c.Child.PacketsIn, pings))
	}
	if c.DPD.Exchanges() == 0 {
		c.Problems = append(c.Problems, "no DPD exchange in the DPD period")
	}
	if c.DPD.Unanswered > 0 {
		c.Problems = append(c.Problems, fmt.Sprintf("%d DPD requests of the client unanswered", c.DPD.Unanswered))
	}
	if !c.DPD.SameIKESA {
		c.Problems = append(c.Problems, "the IKE SA changed during the DPD period")
	}
	c.OK = len(c.Problems) == 0
}
