package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hike-vpn/hike/internal/lab"
)

func newLabCmd() *cobra.Command {
	var (
		o        lab.Options
		jsonOut  bool
		rfc6311  bool
		scenario string
	)
	var names []string
	for _, s := range lab.Scenarios() {
		names = append(names, fmt.Sprintf("  %-10s %s", s.Name, s.Description))
	}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a demonstration scenario in network namespaces on this machine",
		Long: `Run a scenario end to end on this machine, as root: network namespaces for
hike nodes (this very binary, running "hike serve") and their clients,
tunnels and DPD through them, then a report of what happened. Everything
the lab creates (namespaces, processes, temporary files) is removed at the
end, also on failure, SIGINT or SIGTERM.

Scenarios:
` + strings.Join(names, "\n") + `

The failover scenario (the default) needs only root and iproute2: a
cluster of --nodes hike nodes on one bridge, each owning a VIP; --clients
simulated clients ("hike load", this binary) spread over the VIPs with a
Child SA and a virtual IP each, and --strongswan clients pinging through
their tunnels; DPD every --dpd; after --kill-after of steady DPD the node
with the most SAs (or the one --kill names) is SIGKILLed and its link
taken down. The report gives
the SAs per node before and after, the time from the kill to the takeover
and to the last RFC 6311 resync, what raft replicated during steady DPD,
and what the clients saw: DPD timeouts, resyncs, SAs lost, pings lost.

Progress goes to stderr, the report to stdout. The exit status is 0 when
the report says OK (with --keep: and the lab was then ended by Ctrl-C),
non-zero on failure or when interrupted before the report.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Scenario = scenario
			o.NoRFC6311 = !rfc6311
			o.Progress = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			printed := false
			print := func(r *lab.Report) {
				if !printed {
					printed = true
					writeReport(cmd.OutOrStdout(), r, jsonOut)
				}
			}
			if o.Keep {
				// With --keep the report comes before the wait, not after.
				o.Up = print
			}
			r, err := lab.Run(ctx, o)
			if r != nil {
				print(r)
			}
			if errors.Is(err, lab.ErrInterrupted) {
				return errors.New("lab interrupted; everything it created is removed")
			}
			if err != nil && r != nil {
				return errors.New("lab failed; everything it created is removed")
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", lab.DefaultScenario, "the scenario to run")
	f.Var(&clientsFlag{o: &o}, "clients", "clients: failover: N simulated (default 300); tunnel: N, KIND or KIND:N strongSwan clients, KIND strongswan (default 1)")
	f.IntVar(&o.Nodes, "nodes", 0, "failover: hike nodes, 3 to 7 voters with the witness (default 3, with --witness 2)")
	f.BoolVar(&o.Witness, "witness", false, "failover: add a vote-only member (hike witness)")
	f.IntVar(&o.StrongSwan, "strongswan", 0, "failover: strongSwan clients besides the simulated ones (needs strongSwan)")
	f.DurationVar(&o.DPD, "dpd", 0, "failover: DPD delay of clients and nodes (default 2s); tunnel: how long to watch DPD with the tunnels idle (default 4s)")
	f.StringVar(&o.Kill, "kill", "", "failover: the node to kill: busiest (default: the most SAs), leader, follower (the busiest one) or a node ID")
	f.DurationVar(&o.KillAfter, "kill-after", 0, "failover: steady DPD with every client up before the kill (default 2 DPD delays)")
	f.BoolVar(&rfc6311, "rfc6311", true, "failover: simulated clients advertise RFC 6311 (false: the cluster replicates their counters instead)")
	f.IntVar(&o.Pings, "pings", 0, "tunnel: echo requests per client through its tunnel (default 5)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&o.Keep, "keep", false, "leave the lab up for exploration until Ctrl-C")
	return cmd
}

func writeReport(w io.Writer, r *lab.Report, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return
	}
	r.WriteText(w)
}

// clientsFlag sets Options.ClientKind and Options.Clients from one value.
type clientsFlag struct {
	o   *lab.Options
	val string
}

func (f *clientsFlag) Set(s string) error {
	kind, n, err := lab.ParseClients(s)
	if err != nil {
		return err
	}
	f.o.ClientKind, f.o.Clients, f.val = kind, n, s
	return nil
}

func (f *clientsFlag) String() string {
	if f == nil {
		return ""
	}
	return f.val
}

func (f *clientsFlag) Type() string { return "N|KIND[:N]" }
