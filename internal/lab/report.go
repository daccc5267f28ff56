package lab

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what one run of a scenario saw. It is built while the run goes,
// so a failed or interrupted run still reports everything up to the failure.
// Scenarios that need more (the cluster's failover) add sections; readers of
// the JSON should ignore what they do not know.
type Report struct {
	Scenario    string    `json:"scenario"`
	Summary     string    `json:"summary"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	Started     time.Time `json:"started"`
	DurationMS  int64     `json:"duration_ms"`
	Steps       []Step    `json:"steps"`
	Gateway     Gateway   `json:"gateway,omitzero"` // the tunnel scenario's
	// Clients are the strongSwan clients, in every scenario.
	Clients  []Client  `json:"clients,omitempty"`
	Failover *Failover `json:"failover,omitempty"`
	// Logs holds the tail of each daemon's log when the run failed: the
	// lab's directory is gone by the time anyone reads the report.
	Logs map[string]string `json:"logs,omitempty"`
}

// Step is one timed stage of a run.
type Step struct {
	Name       string `json:"name"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
}

// Gateway is the hike side.
type Gateway struct {
	Namespace   string `json:"namespace"`
	Outer       string `json:"outer"`
	Protected   string `json:"protected"`
	Dataplane   string `json:"dataplane"`
	IKESAs      int    `json:"ike_sas"`
	ChildSAs    int    `json:"child_sas"`
	DPDSent     uint32 `json:"dpd_sent"`
	DPDAnswered uint32 `json:"dpd_answered"`
}

// Client is one client namespace and its tunnel, as the client saw it,
// cross-checked against hike's view.
type Client struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Kind      string   `json:"kind"`
	VIP       string   `json:"vip,omitempty"` // the cluster VIP it dials (failover)
	Outer     string   `json:"outer"`
	Inner     string   `json:"inner"`
	IKE       IKESA    `json:"ike_sa"`
	Child     ChildSA  `json:"child_sa"`
	Ping      Ping     `json:"ping"`
	DPD       DPD      `json:"dpd"`
	OK        bool     `json:"ok"`
	Problems  []string `json:"problems,omitempty"`
}

// IKESA identifies an IKE SA and what it negotiated.
type IKESA struct {
	State    string `json:"state"`
	SPIi     string `json:"spi_i"`
	SPIr     string `json:"spi_r"`
	Proposal string `json:"proposal"`
	// OnGateway says hike lists an IKE SA with the same SPIs.
	OnGateway bool `json:"on_gateway"`
}

// ChildSA is the Child SA carrying the client's traffic, with the client's
// counters: what went through the tunnel as strongSwan counts it.
type ChildSA struct {
	Name       string `json:"name"`
	Proposal   string `json:"proposal"`
	SPIIn      string `json:"spi_in"`
	SPIOut     string `json:"spi_out"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
}

// Ping is one ping run through the tunnel.
type Ping struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	RTTMinMS float64 `json:"rtt_min_ms"`
	RTTAvgMS float64 `json:"rtt_avg_ms"`
	RTTMaxMS float64 `json:"rtt_max_ms"`
	// LongestGapMS is the longest run of unanswered requests, in time
	// (failover: the continuous ping across the kill).
	LongestGapMS int64 `json:"longest_gap_ms,omitempty"`
}

// DPD counts the liveness checks of the DPD period in each direction, and
// whether the IKE SA came out of it unchanged.
type DPD struct {
	PeriodMS int64 `json:"period_ms"`
	// FromGateway: hike's requests the client answered.
	FromGateway int `json:"from_gateway"`
	// FromClient: the client's requests hike answered.
	FromClient int `json:"from_client"`
	// Unanswered: the client's requests still without a response at the end.
	Unanswered int  `json:"unanswered"`
	SameIKESA  bool `json:"same_ike_sa"`
}

// Exchanges is the number of DPD exchanges in both directions.
func (d DPD) Exchanges() int { return d.FromGateway + d.FromClient }

// WriteText renders the report for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "hike lab: %s\n", r.Summary)
	if r.Failover != nil {
		b.WriteString("\n")
		writeFailover(&b, r)
	} else {
		g := r.Gateway
		fmt.Fprintf(&b, "\ngateway %s: hike at %s, protected network %s, %s data plane\n",
			dash(g.Namespace), dash(g.Outer), dash(g.Protected), dash(g.Dataplane))
		for _, c := range r.Clients {
			writeClient(&b, c)
		}
		fmt.Fprintf(&b, "\nhike lists %d IKE SA%s and %d Child SA%s; its DPD: %d sent, %d answered\n",
			g.IKESAs, plural(g.IKESAs), g.ChildSAs, plural(g.ChildSAs), g.DPDSent, g.DPDAnswered)
	}
	steps := make([]string, 0, len(r.Steps))
	for _, s := range r.Steps {
		st := s.Name + " " + ms(s.DurationMS)
		if s.Error != "" {
			st += " (failed)"
		}
		steps = append(steps, st)
	}
	fmt.Fprintf(&b, "\nsteps: %s; total %s\n", strings.Join(steps, ", "), ms(r.DurationMS))
	for _, name := range slices.Sorted(maps.Keys(r.Logs)) {
		fmt.Fprintf(&b, "\n--- last lines of %s\n%s\n", name, strings.TrimRight(r.Logs[name], "\n"))
	}
	switch {
	case r.OK:
		b.WriteString("\nresult: OK\n")
	case r.Interrupted:
		fmt.Fprintf(&b, "\nresult: INTERRUPTED: %s\n", r.Error)
	default:
		fmt.Fprintf(&b, "\nresult: FAILED: %s\n", r.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeClient(b *strings.Builder, c Client) {
	fmt.Fprintf(b, "\nclient %s (%s, namespace %s): %s, inner %s\n", c.Name, c.Kind, c.Namespace, c.Outer, c.Inner)
	if c.IKE.SPIi != "" {
		seen := "not listed by hike"
		if c.IKE.OnGateway {
			seen = "same SPIs on hike"
		}
		fmt.Fprintf(b, "  IKE SA    %s, SPIs %s (i) %s (r), %s\n", c.IKE.State, c.IKE.SPIi, c.IKE.SPIr, seen)
		fmt.Fprintf(b, "  proposal  %s\n", dash(c.IKE.Proposal))
	}
	if ch := c.Child; ch.SPIIn != "" {
		fmt.Fprintf(b, "  Child SA  %s, ESP %s, SPIs in %s out %s\n", ch.Name, dash(ch.Proposal), ch.SPIIn, ch.SPIOut)
	}
	if p := c.Ping; p.Sent > 0 {
		fmt.Fprintf(b, "  ping      %s -> %s: %d/%d answered", p.From, p.To, p.Received, p.Sent)
		if p.Received > 0 {
			fmt.Fprintf(b, ", rtt min/avg/max %.3f/%.3f/%.3f ms", p.RTTMinMS, p.RTTAvgMS, p.RTTMaxMS)
		}
		b.WriteString("\n")
	}
	if ch := c.Child; ch.SPIIn != "" {
		fmt.Fprintf(b, "  tunnel    strongSwan counted %d packets (%d bytes) in, %d packets (%d bytes) out\n",
			ch.PacketsIn, ch.BytesIn, ch.PacketsOut, ch.BytesOut)
	}
	if d := c.DPD; d.PeriodMS > 0 {
		same := "IKE SA unchanged"
		if !d.SameIKESA {
			same = "IKE SA changed or lost"
		}
		fmt.Fprintf(b, "  DPD       %s: %d from hike answered by the client, %d from the client answered by hike",
			ms(d.PeriodMS), d.FromGateway, d.FromClient)
		if d.Unanswered > 0 {
			fmt.Fprintf(b, ", %d unanswered", d.Unanswered)
		}
		fmt.Fprintf(b, "; %s\n", same)
	}
	if c.OK {
		b.WriteString("  result    ok\n")
	} else {
		for _, p := range c.Problems {
			fmt.Fprintf(b, "  PROBLEM   %s\n", p)
		}
	}
}

// ms spells a duration in milliseconds to the precision a reader wants:
// whole milliseconds below a second, tenths of a second above.
func ms(v int64) string {
	d := time.Duration(v) * time.Millisecond
	if d >= time.Second {
		d = d.Round(100 * time.Millisecond)
	}
	return d.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
