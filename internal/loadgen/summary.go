package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Summary is the outcome of a run, as `hike load --json` prints it.
type Summary struct {
	Target      string  `json:"target"`
	Clients     int     `json:"clients"`
	SourceAddrs int     `json:"source_addresses"`
	Rate        float64 `json:"rate_per_s"`
	Child       bool    `json:"child_sa"`
	VirtualIP   bool    `json:"virtual_ip"`
	RFC6311     bool    `json:"rfc6311"`
	DPDDelay    float64 `json:"dpd_delay_s"`
	Elapsed     float64 `json:"elapsed_s"`

	Initiated   int64 `json:"initiated"`
	Established int64 `json:"established"`
	Failed      int64 `json:"failed"`
	// Pending clients had no setup outcome when the run ended.
	Pending  int64            `json:"pending"`
	Failures map[string]int64 `json:"failures_by_reason"`
	// UpAtEnd counts IKE SAs still established at the end: fewer than
	// Established means SAs died after setup (DPD timeouts, deletes).
	UpAtEnd int64 `json:"established_at_end"`
	// SetupRate is Established over the time from the first initiation to
	// the last establishment.
	SetupRate float64 `json:"setup_rate_per_s"`
	// SetupElapsed is when the last client got its setup outcome, 0 if
	// some never did.
	SetupElapsed float64 `json:"setup_elapsed_s"`
	SetupLatency Latency `json:"setup_latency"`

	DPD DPDSummary `json:"dpd"`
	// ResyncsSeen counts RFC 6311 synchronisation requests the clients
	// answered: a cluster node that took over resynchronising its SAs.
	ResyncsSeen uint64 `json:"resyncs_seen"`
	Retransmits uint64 `json:"retransmits"`
	SendErrors  uint64 `json:"send_errors"`
	// Drops on the clients' side: a load generator that drops responses
	// measures itself, not the responder.
	Drops Drops      `json:"client_drops"`
	CPU   []CPUUsage `json:"cpu"`
}

// Drops counts what the clients' side lost.
type Drops struct {
	// Queue: datagrams the engine had no queue room for.
	Queue uint64 `json:"engine_queue"`
	// Kernel: datagrams the kernel dropped, mostly for a full receive
	// buffer.
	Kernel     uint64 `json:"socket_kernel"`
	UnknownSPI uint64 `json:"unknown_spi"`
	Invalid    uint64 `json:"invalid"` // malformed or failing integrity
}

// Latency is a distribution in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// DPDSummary describes the clients' dead peer detection.
type DPDSummary struct {
	Sent      uint64 `json:"sent"`
	Completed uint64 `json:"completed"`
	Failed    uint64 `json:"failed"`
	Timeouts  uint64 `json:"timeouts"`
	// AfterSetup counts those completed after every client had its setup
	// outcome: what the responder's CPU time after setup paid for.
	AfterSetup uint64 `json:"completed_after_setup"`
	// SentAfterSetup counts probes sent after every client had its setup
	// outcome, and RetransmitsAfterSetup how often one of them went a
	// retransmission timeout without an answer and was sent again: a
	// responder that keeps up has next to none, and Timeouts (five
	// retransmissions, about a minute) come too late for a short run.
	SentAfterSetup        uint64 `json:"sent_after_setup"`
	RetransmitsAfterSetup uint64 `json:"retransmits_after_setup"`
	// PerSecond is completed DPD exchanges per second over Window: whole
	// DPD delays from one delay after every client had its setup outcome,
	// when every SA probes at its steady rate (SAs set up together probe
	// in step, so a partial period would miscount); failing a whole
	// period, from then to the end; failing a second of that, from the
	// setup's end; failing that, the whole run.
	PerSecond float64 `json:"per_s"`
	Window    float64 `json:"window_s"`
	RTT       Latency `json:"rtt"`
}

// CPUUsage is one process's CPU time over the run.
type CPUUsage struct {
	PID     int     `json:"pid"`
	Name    string  `json:"name"`
	Seconds float64 `json:"cpu_s"`
	// Percent is of one core: 200 is both cores of a 2-core machine.
	Percent float64 `json:"percent"`
	// SetupSeconds is the part until every client had its setup outcome,
	// SteadySeconds the rest (DPD only), SteadyPercent its share of a core.
	SetupSeconds  float64 `json:"setup_cpu_s,omitempty"`
	SteadySeconds float64 `json:"steady_cpu_s,omitempty"`
	SteadyPercent float64 `json:"steady_percent,omitempty"`
	Err           string  `json:"error,omitempty"`
}

func latencyOf(h *Histogram) Latency {
	return Latency{Count: h.Count(), P50: ms(h.Quantile(0.5)), P99: ms(h.Quantile(0.99)), Max: ms(h.Max())}
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 3, 64), 64)
	return r
}

func (r *run) summary(elapsed time.Duration) *Summary {
	st := r.eng.Stats()
	s := &Summary{
		Target: r.o.Target.String(), Clients: r.o.Clients, SourceAddrs: len(r.srcs), Rate: r.o.Rate,
		Child: r.o.Child, VirtualIP: r.o.VirtualIP, RFC6311: r.o.RFC6311, DPDDelay: r.o.DPD.Seconds(), Elapsed: round3(elapsed.Seconds()),
		Initiated: r.initiated.Load(), Established: r.established.Load(), Failed: r.failed.Load(),
		UpAtEnd: st.Established.Load(), SetupLatency: latencyOf(&r.setup),
		ResyncsSeen: st.SyncsAnswered.Load(), Retransmits: st.Retransmits.Load(), SendErrors: r.sendErrs.Load(),
	}
	s.Pending = s.Initiated - s.Established - s.Failed
	ss := r.sock.Stats()
	s.Drops = Drops{Queue: st.QueueDrops.Load(), Kernel: ss.DropKernel, UnknownSPI: st.UnknownSPI.Load(),
		Invalid: st.Malformed.Load() + st.IntegrityFail.Load()}
	r.mu.Lock()
	s.Failures = make(map[string]int64, len(r.reasons))
	for k, v := range r.reasons {
		s.Failures[k] = v
	}
	r.mu.Unlock()
	if up := time.Duration(r.lastUp.Load()); s.Established > 0 && up > 0 {
		s.SetupRate = round3(float64(s.Established) / up.Seconds())
	}
	done := r.dpdDone.Load()
	s.DPD = DPDSummary{Sent: st.DPDSent.Load(), Completed: done, Failed: r.dpdFailed.Load(),
		Timeouts: st.DPDTimeouts.Load(), RTT: latencyOf(&r.dpdRTT)}
	window, base, top := elapsed, uint64(0), done
	select {
	case <-r.settled:
		settled := time.Duration(r.settledAt.Load())
		s.SetupElapsed = round3(settled.Seconds())
		s.DPD.AfterSetup = done - r.dpdAtSettle.Load()
		s.DPD.SentAfterSetup = s.DPD.Sent - r.sentAtSettle
		s.DPD.RetransmitsAfterSetup = s.Retransmits - r.rexmtAtSettle
		first, last := time.Duration(r.steadyAt.Load()), time.Duration(r.lastMarkAt.Load())
		switch {
		case first > 0 && last > first:
			window, base, top = last-first, r.dpdAtSteady.Load(), r.dpdAtLast.Load()
		case first > 0 && elapsed-first >= time.Second:
			window, base = elapsed-first, r.dpdAtSteady.Load()
		case elapsed-settled >= time.Second:
			window, base = elapsed-settled, r.dpdAtSettle.Load()
		}
	default:
	}
	if window > 0 {
		s.DPD.Window = round3(window.Seconds())
		s.DPD.PerSecond = round3(float64(top-base) / window.Seconds())
	}
	return s
}

// WriteText prints s for people.
func (s *Summary) WriteText(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "target %s: %d clients from %d source addresses at %g/s, child SA %v, RFC 6311 %v, DPD %gs, %.1fs\n",
		s.Target, s.Clients, s.SourceAddrs, s.Rate, s.Child, s.RFC6311, s.DPDDelay, s.Elapsed)
	fmt.Fprintf(&b, "setup:   %d established, %d failed, %d pending of %d initiated; %.1f/s; latency p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		s.Established, s.Failed, s.Pending, s.Initiated, s.SetupRate, s.SetupLatency.P50, s.SetupLatency.P99, s.SetupLatency.Max)
	reasons := make([]string, 0, len(s.Failures))
	for k := range s.Failures {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(&b, "         failed: %d × %s\n", s.Failures[k], k)
	}
	fmt.Fprintf(&b, "dpd:     %d sent, %d completed, %d timeouts; %.1f/s over %.1fs; rtt p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		s.DPD.Sent, s.DPD.Completed, s.DPD.Timeouts, s.DPD.PerSecond, s.DPD.Window, s.DPD.RTT.P50, s.DPD.RTT.P99, s.DPD.RTT.Max)
	if s.DPD.SentAfterSetup > 0 {
		fmt.Fprintf(&b, "         after setup: %d probes sent, %d sent again for want of an answer\n",
			s.DPD.SentAfterSetup, s.DPD.RetransmitsAfterSetup)
	}
	fmt.Fprintf(&b, "end:     %d IKE SAs up, %d resyncs answered, %d retransmits, %d send errors\n",
		s.UpAtEnd, s.ResyncsSeen, s.Retransmits, s.SendErrors)
	if d := s.Drops; d != (Drops{}) {
		fmt.Fprintf(&b, "drops:   %d engine queue, %d kernel, %d unknown SPI, %d invalid (on the clients' side)\n",
			d.Queue, d.Kernel, d.UnknownSPI, d.Invalid)
	}
	for _, c := range s.CPU {
		if c.Err != "" {
			fmt.Fprintf(&b, "cpu:     pid %d: %s\n", c.PID, c.Err)
			continue
		}
		fmt.Fprintf(&b, "cpu:     %s (pid %d) %.2fs, %.1f%% of a core; %.2fs until setups ended, %.2fs after (%.1f%%)\n",
			c.Name, c.PID, c.Seconds, c.Percent, c.SetupSeconds, c.SteadySeconds, c.SteadyPercent)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// progress writes a \r-led status line until the run stops.
func (r *run) progress(done chan<- struct{}) {
	defer close(done)
	if r.o.Progress == nil {
		<-r.stopped
		return
	}
	every := r.o.ProgressEvery
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastDPD uint64
	var lastUp int64
	last := time.Now()
	for {
		select {
		case <-r.stopped:
			fmt.Fprintln(r.o.Progress, "\r"+r.line(lastUp, lastDPD, last, time.Now()))
			return
		case now := <-t.C:
			line := r.line(lastUp, lastDPD, last, now)
			lastUp, lastDPD, last = r.established.Load(), r.dpdDone.Load(), now
			fmt.Fprint(r.o.Progress, "\r"+line)
		}
	}
}

func (r *run) line(lastUp int64, lastDPD uint64, last, now time.Time) string {
	dt := now.Sub(last).Seconds()
	up, dpd := r.established.Load(), r.dpdDone.Load()
	var upRate, dpdRate float64
	if dt > 0 {
		upRate, dpdRate = float64(up-lastUp)/dt, float64(dpd-lastDPD)/dt
	}
	st := r.eng.Stats()
	l := fmt.Sprintf("%6.1fs  initiated %d/%d  up %d  failed %d  setup %.0f/s  dpd %.0f/s  dpd rtt p99 %.2f ms  retransmits %d  resyncs %d",
		now.Sub(r.start).Seconds(), r.initiated.Load(), r.o.Clients, st.Established.Load(), r.failed.Load(),
		upRate, dpdRate, ms(r.dpdRTT.Quantile(0.99)), st.Retransmits.Load(), st.SyncsAnswered.Load())
	return l + "   " // wipes the tail of a longer previous line
}

// cpuWatch samples processes' CPU time from /proc at the start, when
// every client has its setup outcome, and at the end, so that the cost of
// setups and of steady-state DPD can be told apart.
type cpuWatch struct {
	pids    []int
	start   []float64
	settled []float64 // nil until sampled
	errs    []error
}

func startCPU(pids []int) *cpuWatch {
	w := &cpuWatch{pids: append([]int{os.Getpid()}, pids...)}
	for _, p := range w.pids {
		s, err := procCPU(p)
		w.start = append(w.start, s)
		w.errs = append(w.errs, err)
	}
	return w
}

// settle samples the processes once setups are over; it runs before
// finish, on the goroutine that calls finish.
func (w *cpuWatch) settle() {
	w.settled = make([]float64, len(w.pids))
	for i, p := range w.pids {
		v, err := procCPU(p)
		if err != nil && w.errs[i] == nil {
			w.errs[i] = err
		}
		w.settled[i] = v
	}
}

func (w *cpuWatch) finish(elapsed, settledAt time.Duration) []CPUUsage {
	out := make([]CPUUsage, 0, len(w.pids))
	for i, p := range w.pids {
		u := CPUUsage{PID: p, Name: procName(p)}
		end, err := procCPU(p)
		if err == nil {
			err = w.errs[i]
		}
		if err != nil {
			u.Err = err.Error()
			out = append(out, u)
			continue
		}
		u.Seconds = round3(end - w.start[i])
		if elapsed > 0 {
			u.Percent = round3(100 * u.Seconds / elapsed.Seconds())
		}
		if w.settled != nil {
			u.SetupSeconds = round3(w.settled[i] - w.start[i])
			u.SteadySeconds = round3(end - w.settled[i])
			// A share over moments after the last setup would be noise.
			if d := elapsed - settledAt; d >= time.Second {
				u.SteadyPercent = round3(100 * u.SteadySeconds / d.Seconds())
			}
		}
		out = append(out, u)
	}
	return out
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture Go supports.
const clockTicks = 100

// procCPU returns utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads fields 14 and 15 of /proc/PID/stat (proc(5)), counted
// after the command name, which may itself hold spaces and parentheses.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	return float64(ut+st) / clockTicks, nil
}

func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
