package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/wire"
)

// saFlags are shared by every `hike sa` command.
type saFlags struct {
	socket  string
	json    bool
	timeout time.Duration
}

func newSACmd() *cobra.Command {
	f := &saFlags{}
	cmd := &cobra.Command{
		Use:   "sa",
		Short: "List and operate on IKE SAs of a running daemon",
		Long: `Inspect and operate on the IKE SAs of a running hike serve through its
control socket. Each command takes --json for the API's JSON as is.
An SA is named by the ID that "hike sa list" shows or by either SPI in hex.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q: expected list, show, initiate, terminate or resync", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&f.socket, "socket", config.DefaultControlSocket, "the daemon's control socket (control_socket in its config)")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print the control API's JSON instead of tables")

	list := &cobra.Command{
		Use:   "list",
		Short: "List IKE SAs",
		Args:  want(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, http.MethodGet, "/v1/sas", nil, func(w io.Writer, raw []byte) error {
				var sas []ike.SAInfo
				if err := json.Unmarshal(raw, &sas); err != nil {
					return err
				}
				printList(w, sas)
				return nil
			})
		},
	}
	show := &cobra.Command{
		Use:   "show REF",
		Short: "Show one IKE SA with its Child SAs, counters and RFC 6311 state",
		Args:  want(1, "an IKE SA ID or SPI (see hike sa list)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, http.MethodGet, control.SAPath(args[0], ""), nil, showSA)
		},
	}
	initiate := &cobra.Command{
		Use:   "initiate CONN",
		Short: "Start a connection from the configuration and wait for its IKE SA",
		Args:  want(1, "a connection name from the daemon's configuration"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := control.InitiateRequest{Conn: args[0], Timeout: durationString(f.timeout)}
			return f.run(cmd, http.MethodPost, "/v1/initiate", body, showSA)
		},
	}
	terminate := &cobra.Command{
		Use:   "terminate REF",
		Short: "Delete an IKE SA and its Child SAs",
		Args:  want(1, "an IKE SA ID or SPI (see hike sa list)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := control.WaitRequest{Timeout: durationString(f.timeout)}
			return f.run(cmd, http.MethodPost, control.SAPath(args[0], "terminate"), body, func(w io.Writer, raw []byte) error {
				var r control.Result
				if err := json.Unmarshal(raw, &r); err != nil {
					return err
				}
				fmt.Fprintf(w, "IKE SA %s (%s) %s\n", r.ID, dash(r.Conn), r.Result)
				return nil
			})
		},
	}
	resync := &cobra.Command{
		Use:   "resync REF",
		Short: "Resynchronise an IKE SA's message IDs and ESP counters with its peer (RFC 6311)",
		Args:  want(1, "an IKE SA ID or SPI (see hike sa list)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := control.WaitRequest{Timeout: durationString(f.timeout)}
			return f.run(cmd, http.MethodPost, control.SAPath(args[0], "resync"), body, func(w io.Writer, raw []byte) error {
				var sa ike.SAInfo
				if err := json.Unmarshal(raw, &sa); err != nil {
					return err
				}
				b, a := sa.Stats.LastSyncBefore, sa.Stats.LastSyncAfter
				fmt.Fprintf(w, "IKE SA %s resynchronised: send MID %d -> %d, receive MID %d -> %d\n", sa.ID, b[0], a[0], b[1], a[1])
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{initiate, terminate, resync} {
		c.Flags().DurationVar(&f.timeout, "timeout", 0, "how long to wait for the outcome (default: the daemon's, 30s)")
	}
	cmd.AddCommand(list, show, initiate, terminate, resync)
	return cmd
}

// want checks the number of positional arguments and says what they are.
func want(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		// main prefixes errors with "hike: " already.
		name := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
		if n == 0 {
			return fmt.Errorf("%s takes no arguments, got %q", name, args)
		}
		return fmt.Errorf("%s expects %s, got %d arguments; usage: %s", name, what, len(args), cmd.UseLine())
	}
}

func durationString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// run sends one request and prints the answer: as received with --json,
// through human otherwise.
func (f *saFlags) run(cmd *cobra.Command, method, path string, body any, human func(io.Writer, []byte) error) error {
	// The daemon bounds the wait for a peer; the client allows a little
	// more so that the daemon's timeout answer arrives.
	wait := 10 * time.Second
	if method == http.MethodPost {
		wait = max(f.timeout, 30*time.Second) + 10*time.Second
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), wait)
	defer cancel()
	raw, err := control.NewClient(f.socket).Do(ctx, method, path, body)
	if err != nil {
		var ae *control.APIError
		if f.json && errors.As(err, &ae) {
			cmd.OutOrStdout().Write(ae.Body)
		}
		var ue *control.UnreachableError
		if errors.As(err, &ue) {
			return fmt.Errorf("%w\nIs the daemon running? Start it with `hike serve -c FILE`, or point --socket at its control_socket", err)
		}
		return err
	}
	if f.json {
		_, err := cmd.OutOrStdout().Write(raw)
		return err
	}
	if err := human(cmd.OutOrStdout(), raw); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", f.socket, err)
	}
	return nil
}

func printList(w io.Writer, sas []ike.SAInfo) {
	if len(sas) == 0 {
		fmt.Fprintln(w, "no IKE SAs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONN\tSTATE\tREMOTE\tPEER ID\tVIP\tCHILDREN\tMIDS TX/RX\tRFC 6311")
	for _, sa := range sas {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%s\n",
			sa.ID, dash(sa.Conn), sa.State, sa.Remote, dash(sa.PeerID), dash(sa.VirtualIP),
			len(sa.Children), sa.NextSendMID, sa.NextRecvMID, syncFlags(sa.Extensions))
	}
	tw.Flush()
}

func showSA(w io.Writer, raw []byte) error {
	var sa ike.SAInfo
	if err := json.Unmarshal(raw, &sa); err != nil {
		return err
	}
	printSA(w, sa, time.Now())
	return nil
}

func printSA(w io.Writer, sa ike.SAInfo, now time.Time) {
	role := "responder"
	if sa.Initiator {
		role = "initiator"
	}
	fmt.Fprintf(w, "IKE SA %s\n", sa.ID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...) }
	row("connection", "%s", dash(sa.Conn))
	row("state", "%s, %s", sa.State, role)
	row("local", "%s", sa.Local)
	row("remote", "%s", sa.Remote)
	row("peer id", "%s", dash(sa.PeerID))
	row("virtual IP", "%s", dash(sa.VirtualIP))
	row("SPIs", "initiator %s, responder %s", sa.SPIi, sa.SPIr)
	row("suite", "%s", dash(sa.Suite))
	if sa.Established.IsZero() {
		row("established", "-")
	} else {
		row("established", "%s (%s ago)", sa.Established.UTC().Format(time.RFC3339), now.Sub(sa.Established).Round(time.Second))
	}
	row("message IDs", "next send %d, next receive %d", sa.NextSendMID, sa.NextRecvMID)
	row("extensions", "%s", extensions(sa.Extensions))
	row("RFC 6311", "message ID sync %s, replay counter sync %s", yesNo(sa.Extensions.MIDSync), yesNo(sa.Extensions.ReplaySync))
	row("syncs", "answered %d, dropped %d", sa.Stats.SyncsAnswered, sa.Stats.SyncsDropped)
	if b, a := sa.Stats.LastSyncBefore, sa.Stats.LastSyncAfter; b == ([2]uint32{}) && a == ([2]uint32{}) {
		row("last sync", "none")
	} else {
		row("last sync", "send MID %d -> %d, receive MID %d -> %d", b[0], a[0], b[1], a[1])
	}
	row("retransmits", "%d", sa.Stats.Retransmits)
	row("DPD", "sent %d, answered %d", sa.Stats.DPDSent, sa.Stats.DPDAnswered)
	tw.Flush()

	if len(sa.Children) == 0 {
		fmt.Fprintln(w, "  no Child SAs")
		return
	}
	fmt.Fprintf(w, "  Child SAs (%d):\n", len(sa.Children))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    NAME\tSTATE\tSPI IN\tSPI OUT\tENCR\tINTEG\tESN\tLOCAL TS\tREMOTE TS\tIN\tOUT")
	for _, c := range sa.Children {
		in, out := "-", "-"
		if t := c.Traffic; t != nil {
			in = fmt.Sprintf("%d pkts/%d B", t.InPackets, t.InBytes)
			out = fmt.Sprintf("%d pkts/%d B", t.OutPackets, t.OutBytes)
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(c.Name), dash(c.State), c.SPIIn, c.SPIOut,
			encrName(c.Encr, c.EncrBits), integName(c.Integ), yesNo(c.ESN),
			dash(strings.Join(c.LocalTS, ",")), dash(strings.Join(c.RemoteTS, ",")), in, out)
	}
	tw.Flush()
}

func syncFlags(e ike.Extensions) string {
	switch {
	case e.MIDSync && e.ReplaySync:
		return "msgid,replay"
	case e.MIDSync:
		return "msgid"
	case e.ReplaySync:
		return "replay"
	}
	return "-"
}

func extensions(e ike.Extensions) string {
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{e.Fragmentation, "fragmentation"},
		{e.SigHash, "signature hash algorithms"},
		{e.NATLocal, "NAT here"},
		{e.NATRemote, "NAT at peer"},
	} {
		if x.on {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func encrName(id, bits uint16) string {
	var n string
	switch id {
	case wire.ENCR_AES_CBC:
		n = "AES-CBC"
	case wire.ENCR_AES_CTR:
		n = "AES-CTR"
	case wire.ENCR_AES_GCM_8:
		n = "AES-GCM-8"
	case wire.ENCR_AES_GCM_12:
		n = "AES-GCM-12"
	case wire.ENCR_AES_GCM_16:
		n = "AES-GCM-16"
	case wire.ENCR_CHACHA20_POLY1305:
		n = "ChaCha20-Poly1305"
	case wire.ENCR_3DES:
		n = "3DES"
	case wire.ENCR_NULL:
		n = "NULL"
	default:
		n = fmt.Sprintf("ENCR#%d", id)
	}
	if bits != 0 {
		n += fmt.Sprintf("/%d", bits)
	}
	return n
}

func integName(id uint16) string {
	switch id {
	case 0:
		return "-"
	case wire.AUTH_HMAC_SHA1_96:
		return "HMAC-SHA1-96"
	case wire.AUTH_HMAC_SHA2_256_128:
		return "HMAC-SHA2-256-128"
	case wire.AUTH_HMAC_SHA2_384_192:
		return "HMAC-SHA2-384-192"
	case wire.AUTH_HMAC_SHA2_512_256:
		return "HMAC-SHA2-512-256"
	}
	return fmt.Sprintf("INTEG#%d", id)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
