package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hike-vpn/hike/internal/loadgen"
)

func newLoadCmd() *cobra.Command {
	var (
		target, rate, dpd, duration, hold string
		retransmit, cpuProfile            string
		pskFile, pskEnv, idFmt, sources   string
		logLevel                          string
		proposals, espProposals           []string
		watch                             []int
		asJSON, progress                  bool
		o                                 loadgen.Options
	)
	cmd := &cobra.Command{
		Use:   "load --target ADDR[:PORT] --clients N --rate R/s --psk-file F",
		Short: "Simulate many IKEv2 clients against a responder and measure it",
		Long: `load runs N IKEv2 initiators on hike's own engine in this process, ramped
up at a steady rate, each from its own source address (round robin over
--sources, whose addresses must already be local), with PSK authentication,
optional Child SAs (keys derived, nothing installed) and DPD. It reports
setup rate and latency, DPD rate and round trip, failures by reason and
RFC 6311 resyncs seen: a live line on a terminal, a summary at the end.`,
		Example: `  ip addr add 10.201.0.0/16 dev lo
  hike load --target 10.99.0.1 --clients 5000 --rate 1000/s --dpd 5 \
      --psk-env LOAD_PSK --sources 10.201.0.0/16 --duration 60s --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var errs []error
			var err error
			if target == "" {
				errs = append(errs, errors.New("--target: required, ADDR or ADDR:PORT of the responder"))
			} else if o.Target, err = loadgen.ParseTarget(target); err != nil {
				errs = append(errs, fmt.Errorf("--target: %w", err))
			}
			if o.Rate, err = loadgen.ParseRate(rate); err != nil {
				errs = append(errs, fmt.Errorf("--rate: %w", err))
			}
			if o.DPD, err = loadgen.ParseDuration(dpd); err != nil {
				errs = append(errs, fmt.Errorf("--dpd: %w", err))
			}
			if o.Duration, err = loadgen.ParseDuration(duration); err != nil {
				errs = append(errs, fmt.Errorf("--duration: %w", err))
			}
			if o.Hold, err = loadgen.ParseDuration(hold); err != nil {
				errs = append(errs, fmt.Errorf("--hold: %w", err))
			}
			if o.RetransmitTimeout, err = loadgen.ParseDuration(retransmit); err != nil {
				errs = append(errs, fmt.Errorf("--retransmit: %w", err))
			}
			if o.PSK, err = readPSK(pskFile, pskEnv); err != nil {
				errs = append(errs, err)
			}
			if o.Sources, err = loadgen.ParseSources(sources); err != nil {
				errs = append(errs, fmt.Errorf("--sources: %w", err))
			}
			var lvl slog.Level
			if logLevel != "" {
				if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
					errs = append(errs, fmt.Errorf("--log-level %q: expected debug, info, warn or error", logLevel))
				}
				o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			o.IDFormat = idFmt
			o.IKEProposals = proposals
			o.ESPProposals = espProposals
			o.WatchPIDs = watch
			if err := o.Validate(); err != nil {
				return err
			}
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && isTerminal(f) && logLevel == "" {
				o.Progress = f
			} else if progress {
				o.Progress = cmd.ErrOrStderr()
			}
			if cpuProfile != "" {
				// The generator shares the machine with what it measures:
				// its own profile tells what a run costs on its side.
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := loadgen.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return s.WriteText(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "responder address, ADDR or ADDR:PORT (port 500 by default; 4500 speaks NAT-T framing)")
	f.IntVar(&o.Clients, "clients", 100, "number of simulated clients (one IKE SA each)")
	f.StringVar(&rate, "rate", "100/s", "initiations per second during the ramp-up (N, N/s or N/min)")
	f.IntVar(&o.MaxInFlight, "max-inflight", 0, "at most this many setups under way at once; 0: no bound, the rate alone paces")
	f.StringVar(&dpd, "dpd", "0", "clients' DPD delay (seconds or a duration); 0 disables DPD")
	f.StringVar(&pskFile, "psk-file", "", "file holding the pre-shared key")
	f.StringVar(&pskEnv, "psk-env", "", "environment variable holding the pre-shared key")
	f.StringVar(&idFmt, "id-fmt", "client%d.load", "client identity with one %d for the client's index; empty: the source address")
	f.StringVar(&sources, "sources", "", "comma-separated local prefixes or addresses to spread clients over (must exist); default: the route's source")
	f.Uint16Var(&o.LocalPort, "port", 500, "clients' local UDP port, shared by all (500 adds 4500 for NAT-T); 0 picks a free one")
	f.StringSliceVar(&proposals, "ike-proposal", nil, "IKE proposal in hike's syntax (repeatable); default hike's defaults")
	f.StringSliceVar(&espProposals, "esp-proposal", nil, "ESP proposal for --child in hike's syntax (repeatable); default hike's defaults")
	f.BoolVar(&o.Child, "child", false, "negotiate a Child SA with each IKE SA (keys derived, not installed)")
	f.BoolVar(&o.VirtualIP, "vip", false, "request a virtual IP, which becomes the Child SA's selector (needed with strongSwan's kernel-libipsec)")
	f.BoolVar(&o.RFC6311, "rfc6311", true, "advertise RFC 6311 message ID and replay counter sync")
	f.StringVar(&duration, "duration", "0", "run time from the start; 0 stops once every client has its setup outcome")
	f.StringVar(&hold, "hold", "0", "after every client has its setup outcome, run this much longer (a steady DPD phase), then stop; 0: --duration alone decides")
	f.BoolVar(&progress, "progress", false, "write the progress line to stderr even when it is not a terminal (for a harness to follow)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator itself to this file (go tool pprof)")
	f.StringVar(&retransmit, "retransmit", "0", "first retransmission timeout; 0 is the engine's default (2s)")
	f.IntSliceVar(&watch, "watch-pid", nil, "also report the CPU time of this process over the run (repeatable), e.g. the responder")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	f.StringVar(&logLevel, "log-level", "", "log the engine to stderr at this level (debug, info, warn, error); disables the progress line")
	return cmd
}

// readPSK takes the key from exactly one of a file or an environment
// variable, never from the command line where ps would show it.
func readPSK(file, env string) ([]byte, error) {
	switch {
	case file != "" && env != "":
		return nil, errors.New("--psk-file and --psk-env: give one, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--psk-file: %w", err)
		}
		psk := strings.TrimRight(string(b), "\r\n")
		if psk == "" {
			return nil, fmt.Errorf("--psk-file %s: the file is empty", file)
		}
		return []byte(psk), nil
	case env != "":
		v := os.Getenv(env)
		if v == "" {
			return nil, fmt.Errorf("--psk-env %s: the variable is unset or empty", env)
		}
		return []byte(v), nil
	}
	return nil, errors.New("a pre-shared key is required: --psk-file FILE or --psk-env VAR")
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
