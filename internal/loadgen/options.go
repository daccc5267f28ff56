package loadgen

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/wire"
)

// Options describe one load run.
type Options struct {
	// Target is the responder; port 4500 makes the run speak NAT-T
	// framing (non-ESP marker) from the start.
	Target  netip.AddrPort
	Clients int
	// Rate is the number of initiations per second during the ramp.
	Rate float64
	// MaxInFlight bounds the setups under way at once (0: no bound): a
	// responder that falls behind then slows the ramp instead of drowning
	// in retransmissions, and the setup rate measures what it sustains.
	MaxInFlight int
	// DPD is the clients' DPD delay; 0 disables DPD.
	DPD time.Duration
	PSK []byte
	// IDFormat is each client's identity with one %d for its index
	// (0-based), typed like a configured identity ("client%d.load" is an
	// FQDN). Empty: every client's identity is its source address.
	IDFormat string
	// Sources are the local prefixes whose addresses the clients use,
	// round robin; the addresses must already be local. Empty: the one
	// address the kernel picks towards Target.
	Sources []netip.Prefix
	// LocalPort is the clients' UDP port (all share it: responders tell
	// SAs apart by SPI); 0 picks a free one. Port 500 adds 4500 for NAT-T;
	// from any other port an SA cannot follow a responder that detects
	// (or, like strongSwan with kernel-libipsec, fakes) a NAT to 4500.
	LocalPort uint16
	// IKEProposals in hike's syntax; empty means hike's defaults.
	IKEProposals []string
	// ESPProposals for the Child SA in hike's syntax; empty means hike's
	// defaults.
	ESPProposals []string
	// Child requests one Child SA per IKE SA; keys are derived but no data
	// plane is involved.
	Child bool
	// VirtualIP asks the responder for an address (CP, RFC 7296 §2.19),
	// which then becomes the Child SA's selector: a responder that routes
	// traffic for the client's outer address into a tunnel (strongSwan
	// with kernel-libipsec) cannot otherwise give it a Child SA.
	VirtualIP bool
	// RFC6311 advertises IKEV2_MESSAGE_ID_SYNC_SUPPORTED and
	// IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED.
	RFC6311 bool
	// Duration bounds the run from its start; 0 ends the run once every
	// client has its setup outcome.
	Duration time.Duration
	// Hold keeps the run going this long after every client has its setup
	// outcome, then ends it (or Duration does, if sooner): a steady DPD
	// phase of a known length, however long the ramp took.
	Hold time.Duration
	// RetransmitTimeout is the first retransmission timeout; 0 is the
	// engine's default.
	RetransmitTimeout time.Duration
	// WatchPIDs are other processes (the responder) whose CPU time over
	// the run the summary reports.
	WatchPIDs []int

	// Progress, if set, receives a line every ProgressEvery, each starting
	// with \r so that a terminal shows one updating line.
	Progress      io.Writer
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Validate checks o and says what is expected where it is not.
func (o *Options) Validate() error {
	var errs []error
	if !o.Target.IsValid() || o.Target.Addr().IsUnspecified() {
		errs = append(errs, errors.New("target: an address to initiate to is required (--target ADDR[:PORT])"))
	}
	if o.Clients < 1 {
		errs = append(errs, fmt.Errorf("clients: at least 1, got %d", o.Clients))
	}
	if !(o.Rate > 0) {
		errs = append(errs, fmt.Errorf("rate: a positive number of initiations per second, got %v", o.Rate))
	}
	if o.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("max-inflight: 0 (no bound) or more, got %d", o.MaxInFlight))
	}
	if o.DPD < 0 {
		errs = append(errs, fmt.Errorf("dpd: a non-negative duration, got %v", o.DPD))
	}
	if len(o.PSK) == 0 {
		errs = append(errs, errors.New("psk: a pre-shared key is required (--psk-file or --psk-env)"))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration: a non-negative duration, got %v", o.Duration))
	}
	if o.Hold < 0 {
		errs = append(errs, fmt.Errorf("hold: a non-negative duration, got %v", o.Hold))
	}
	if o.IDFormat != "" {
		if _, err := clientID(o.IDFormat, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := ikeProposals(o.IKEProposals); err != nil {
		errs = append(errs, err)
	}
	if _, err := espProposals(o.ESPProposals); err != nil {
		errs = append(errs, err)
	}
	fam := o.Target.Addr().Unmap().Is4()
	for _, p := range o.Sources {
		if p.Addr().Unmap().Is4() != fam {
			errs = append(errs, fmt.Errorf("sources: %v is not of the target's address family", p))
		}
	}
	return errors.Join(errs...)
}

// ParseTarget parses ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT); the port
// defaults to 500.
func ParseTarget(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 500), nil
	}
	return netip.AddrPort{}, fmt.Errorf("target %q: expected ADDR or ADDR:PORT, e.g. 10.0.0.1 or 10.0.0.1:4500 or [2001:db8::1]:500", s)
}

// ParseRate parses an initiation rate: "200", "200/s", "12000/min".
func ParseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v > 0) || v > 1e7 {
		return 0, fmt.Errorf("rate %q: expected a positive number per second, e.g. 200 or 200/s or 6000/min", s)
	}
	switch unit {
	case "", "s", "sec":
		return v, nil
	case "m", "min":
		return v / 60, nil
	}
	return 0, fmt.Errorf("rate %q: unit %q unknown, expected /s or /min", s, unit)
}

// ParseSources parses comma-separated prefixes or addresses.
func ParseSources(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			bits := p.Bits() - unmapBits(p.Addr())
			if bits < 0 {
				// ::ffff:0.0.0.0/0 spans more than the IPv4-mapped block.
				return nil, fmt.Errorf("sources: %q reaches outside the IPv4-mapped addresses; write the IPv4 prefix", f)
			}
			out = append(out, netip.PrefixFrom(p.Addr().Unmap(), bits))
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		return nil, fmt.Errorf("sources: %q is neither a CIDR prefix nor an address (e.g. 10.201.0.0/16)", f)
	}
	return out, nil
}

func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// sourceAddrs returns up to n usable addresses from the prefixes, in
// order: for IPv4 prefixes shorter than /31 the network and broadcast
// addresses are skipped.
func sourceAddrs(ps []netip.Prefix, n int) []netip.Addr {
	var out []netip.Addr
	for _, p := range ps {
		p = p.Masked()
		a := p.Addr()
		var last netip.Addr
		if a.Is4() && p.Bits() < 31 {
			a = a.Next()
			last = lastAddr(p)
		}
		for ; a.IsValid() && p.Contains(a) && a != last && len(out) < n; a = a.Next() {
			out = append(out, a)
		}
		if len(out) >= n {
			break
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := new(big.Int).SetBytes(p.Addr().AsSlice())
	host := p.Addr().BitLen() - p.Bits()
	ones := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(host)), big.NewInt(1))
	b.Or(b, ones)
	buf := make([]byte, p.Addr().BitLen()/8)
	b.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return a
}

// clientID formats client i's identity from f, which must hold exactly one
// integer verb: clients need distinct identities, or a responder that
// keeps one SA per identity (strongSwan's uniqueids) replaces them.
func clientID(f string, i int) (wire.ID, error) {
	if !oneIntVerb(f) {
		return wire.ID{}, fmt.Errorf("id-fmt %q: expected exactly one %%d for the client's index, e.g. client%%d.load", f)
	}
	s := fmt.Sprintf(f, i)
	id, err := config.ParseIdentity(s, false)
	if err != nil {
		return wire.ID{}, fmt.Errorf("id-fmt %q: %w", f, err)
	}
	if id.Type == 0 || id.Data == nil {
		return wire.ID{}, fmt.Errorf("id-fmt %q: %q is no identity a client can send", f, s)
	}
	return wire.ID{Type: id.Type, Data: id.Data}, nil
}

// oneIntVerb reports whether f has exactly one verb, %d with optional
// flags and width, besides any %% escapes.
func oneIntVerb(f string) bool {
	verbs := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			continue
		}
		for i < len(f) && strings.IndexByte("+- 0123456789", f[i]) >= 0 {
			i++
		}
		if i >= len(f) || f[i] != 'd' {
			return false
		}
		verbs++
	}
	return verbs == 1
}

func ikeProposals(texts []string) ([]wire.Proposal, error) {
	if len(texts) == 0 {
		texts = config.DefaultIKEProposals
	}
	return proposals(wire.ProtoIKE, texts)
}

func espProposals(texts []string) ([]wire.Proposal, error) {
	if len(texts) == 0 {
		texts = config.DefaultESPProposals
	}
	return proposals(wire.ProtoESP, texts)
}

func proposals(proto wire.ProtocolID, texts []string) ([]wire.Proposal, error) {
	out := make([]wire.Proposal, 0, len(texts))
	for i, t := range texts {
		p, err := config.ParseProposal(proto, t)
		if err != nil {
			return nil, fmt.Errorf("proposal %q: %w", t, err)
		}
		out = append(out, p.Wire(uint8(i+1)))
	}
	return out, nil
}

// ParseDuration parses a duration as Go writes it ("500ms", "2s", "1m30s")
// or a plain number of seconds ("5", "0.5").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 && v < 1e9 {
		return time.Duration(v * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: expected seconds or a duration such as 5s, 500ms or 2m", s)
	}
	return d, nil
}
