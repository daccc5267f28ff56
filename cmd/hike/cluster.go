package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/daemon"
)

func newClusterCmd() *cobra.Command {
	f := &saFlags{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and operate the HA cluster of a running node",
		Long: `Inspect and operate the HA cluster through a member's control socket
(hike serve with a cluster section, or hike witness). Each command takes
--json for the API's JSON as is.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q: expected status, handback, join or leave", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&f.socket, "socket", config.DefaultControlSocket, "the node's control socket (control_socket in its config)")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print the control API's JSON instead of tables")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the members, the leader, who serves which VIP and the replication counters",
		Args:  want(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, http.MethodGet, "/v1/cluster", nil, printStatus)
		},
	}
	var node string
	handback := &cobra.Command{
		Use:   "handback [--node ID]",
		Short: "Move the VIPs configured on a node back to it (default: this node), with their SAs",
		Args:  want(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := control.HandbackRequest{Node: node, Timeout: durationString(f.timeout)}
			return f.run(cmd, http.MethodPost, "/v1/cluster/handback", body, func(w io.Writer, raw []byte) error {
				var r control.HandbackResult
				if err := json.Unmarshal(raw, &r); err != nil {
					return err
				}
				fmt.Fprintf(w, "%d VIP(s) handed back to %s\n", r.Moved, r.Node)
				return nil
			})
		},
	}
	handback.Flags().StringVar(&node, "node", "", "the node to hand its VIPs back to (default: the node behind --socket)")
	membership := func(use, short, path, done string) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: want(0, ""),
			RunE: func(cmd *cobra.Command, _ []string) error {
				body := control.WaitRequest{Timeout: durationString(f.timeout)}
				return f.run(cmd, http.MethodPost, path, body, func(w io.Writer, _ []byte) error {
					_, err := fmt.Fprintln(w, done)
					return err
				})
			},
		}
	}
	join := membership("join", "Make this node a voter again after it left", "/v1/cluster/join", "joined the cluster's voters")
	leave := membership("leave", "Take this node out of the voters; its VIPs move to the other concentrators first", "/v1/cluster/leave", "left the cluster's voters")
	for _, c := range []*cobra.Command{handback, join, leave} {
		c.Flags().DurationVar(&f.timeout, "timeout", 0, "how long to wait for the outcome (default: the daemon's, 30s)")
	}
	cmd.AddCommand(status, handback, join, leave)
	return cmd
}

// clusterStatus mirrors the JSON of GET /v1/cluster for printing.
type clusterStatus struct {
	Node         string `json:"node"`
	Leader       string `json:"leader"`
	Serving      bool   `json:"serving"`
	Witness      bool   `json:"witness"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID          string `json:"id"`
		Address     string `json:"address"`
		Witness     bool   `json:"witness"`
		Leader      bool   `json:"leader"`
		Reachable   bool   `json:"reachable"`
		LastContact int64  `json:"last_contact_ms"`
	} `json:"members"`
	VIPs []struct {
		VIP   string `json:"vip"`
		Owner string `json:"owner"`
		Home  string `json:"home"`
	} `json:"vips"`
	SAs         map[string]int    `json:"sas"`
	Replication map[string]uint64 `json:"replication"`
	Takeovers   []struct {
		VIP        string `json:"vip"`
		Started    string `json:"started"`
		SAs        int    `json:"sas"`
		Synced     int    `json:"synced"`
		Failed     int    `json:"failed"`
		RestoredMS int64  `json:"restored_ms"`
		SyncedMS   int64  `json:"synced_ms"`
	} `json:"takeovers"`
}

func printStatus(w io.Writer, raw []byte) error {
	var s clusterStatus
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	role := "member"
	if s.Witness {
		role = "witness"
	}
	leader := s.Leader
	if leader == "" {
		leader = "none (election under way, or no majority)"
	}
	fmt.Fprintf(w, "node %s (%s), serving: %v, leader: %s, term %d, applied index %d\n\n",
		s.Node, role, s.Serving, leader, s.Term, s.AppliedIndex)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tROLE\tREACHABLE\tLAST CONTACT\tSAS")
	for _, m := range s.Members {
		r := "voter"
		switch {
		case m.Leader:
			r = "leader"
		case m.Witness:
			r = "witness"
		}
		last := "-"
		if m.LastContact >= 0 {
			last = fmt.Sprintf("%d ms", m.LastContact)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%d\n", m.ID, m.Address, r, m.Reachable, last, s.SAs[m.ID])
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tOWNER\tHOME")
	for _, v := range s.VIPs {
		owner := v.Owner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.VIP, owner, v.Home)
	}
	tw.Flush()
	if len(s.Takeovers) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TAKEOVER OF\tSTARTED\tSAS\tSYNCED\tFAILED\tRESTORED IN\tSYNCED IN")
		for _, t := range s.Takeovers {
			synced := "under way"
			if t.SyncedMS >= 0 {
				synced = fmt.Sprintf("%d ms", t.SyncedMS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d ms\t%s\n", t.VIP, t.Started, t.SAs, t.Synced, t.Failed, t.RestoredMS, synced)
		}
		tw.Flush()
	}
	if len(s.Replication) > 0 {
		keys := make([]string, 0, len(s.Replication))
		for k := range s.Replication {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "\nreplication applied here:")
		for _, k := range keys {
			fmt.Fprintf(w, " %s=%d", k, s.Replication[k])
		}
		fmt.Fprintln(w)
	}
	return nil
}

func newWitnessCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "witness -c FILE",
		Short: "Run a vote-only cluster member (no IKE, no data plane)",
		Long: `Run a cluster member that only votes, so that two concentrators and a
witness form a majority that survives the loss of either concentrator. Its
configuration needs the cluster section (this node listed in peers with
witness: true) and, optionally, control_socket and log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			log := newLogger(cfg)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("hike witness starting", "version", version, "config", file)
			return daemon.RunWitness(ctx, cfg, log)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "/etc/hike/hike.yaml", "configuration file")
	return cmd
}
