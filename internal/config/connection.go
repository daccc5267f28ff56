package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hike-vpn/hike/internal/wire"
)

func (d *decoder) connection(n *yaml.Node, path string, r *refs) *Connection {
	c := &Connection{
		Fragmentation: true,
		WindowSize:    DefaultWindowSize,
		NATKeepalive:  DefaultNATKeepalive,
		DPD:           DPD{Delay: DefaultDPDDelay, Timeout: DefaultDPDTimeout},
		RFC6311:       RFC6311{MessageIDSync: true, ReplayCounterSync: true, Margin: DefaultRFC6311Margin},
	}
	var pskN, remoteN, caN *yaml.Node
	var poolNames []string
	var poolNodes []*yaml.Node
	var childNodes []childPos
	remoteAuthSet := false
	seen := d.mapping(n, path, []field{
		{"name", true, func(n *yaml.Node, p string) {
			if !d.name(n, p, &c.Name) {
				return
			}
			if l, dup := r.conns[c.Name]; dup {
				d.errorf(n, p, "duplicate connection name %q (first used on line %d)", c.Name, l)
				return
			}
			r.conns[c.Name] = n.Line
		}},
		{"local", true, func(n *yaml.Node, p string) { d.local(n, p, &c.Local) }},
		{"remote", true, func(n *yaml.Node, p string) { remoteN = n; remoteAuthSet, caN = d.remote(n, p, &c.Remote) }},
		{"psk", false, func(n *yaml.Node, p string) { pskN = n; d.name(n, p, &c.PSKName) }},
		{"ike", false, func(n *yaml.Node, p string) { d.ike(n, p, &c.IKE) }},
		{"children", true, func(n *yaml.Node, p string) {
			names := map[string]int{}
			d.sequence(n, p, false, func(i int, n *yaml.Node, p string) {
				ch, pos := d.child(n, p)
				if ch == nil {
					return
				}
				if ch.Name != "" {
					if l, dup := names[ch.Name]; dup {
						d.errorf(pos.name, join(p, "name"), "duplicate child name %q in this connection (first used on line %d)", ch.Name, l)
					}
					names[ch.Name] = pos.name.Line
				}
				c.Children = append(c.Children, ch)
				childNodes = append(childNodes, pos)
			})
			if rn := peek(n); rn != nil && rn.Kind == yaml.SequenceNode && len(rn.Content) == 0 {
				d.errorf(rn, p, "a connection needs at least one child")
			}
		}},
		{"pools", false, func(n *yaml.Node, p string) {
			d.sequence(n, p, true, func(i int, n *yaml.Node, p string) {
				var s string
				if d.name(n, p, &s) {
					poolNames = append(poolNames, s)
					poolNodes = append(poolNodes, n)
				}
			})
		}},
		{"dpd", false, func(n *yaml.Node, p string) { d.dpd(n, p, &c.DPD) }},
		{"fragmentation", false, func(n *yaml.Node, p string) { d.boolean(n, p, &c.Fragmentation) }},
		{"window_size", false, func(n *yaml.Node, p string) { d.intField(n, p, 1, MaxWindowSize, &c.WindowSize) }},
		{"nat_keepalive", false, func(n *yaml.Node, p string) { d.duration(n, p, &c.NATKeepalive) }},
		{"rfc6311", false, func(n *yaml.Node, p string) { d.rfc6311(n, p, &c.RFC6311) }},
	})
	if rn := peek(n); rn == nil || rn.Kind != yaml.MappingNode {
		return nil // already reported; checks below would only add noise
	}
	if !seen["ike"] {
		d.ike(&yaml.Node{Kind: yaml.MappingNode, Line: n.Line}, join(path, "ike"), &c.IKE)
	}
	if !remoteAuthSet {
		c.Remote.Auth = c.Local.Auth
	}

	// PSK: either side using it needs the secret; neither side using it
	// makes a configured secret a mistake worth reporting.
	usesPSK := c.Local.Auth == AuthPSK || c.Remote.Auth == AuthPSK
	switch {
	case usesPSK && !seen["psk"] && c.Local.Auth != "":
		d.errorf(n, path, "missing required key \"psk\": auth psk needs a pre-shared key (the name of an entry in secrets)")
	case !usesPSK && seen["psk"] && c.Local.Auth != "":
		d.errorf(pskN, join(path, "psk"), "neither side authenticates with psk; remove it or set auth: psk")
	}
	if c.Remote.Auth == AuthPubkey && c.Remote.CAFile == "" && remoteN != nil {
		d.errorf(remoteN, join(path, "remote"), "missing required key \"ca\": auth pubkey needs the CA that signs the peer's certificate")
	}
	// Initiating needs somewhere to send IKE_SA_INIT to.
	if len(c.Remote.Addrs) != 1 || !c.Remote.Addrs[0].IsSingleIP() {
		for i, ch := range c.Children {
			if ch.StartAction != StartNone && i < len(childNodes) {
				d.errorf(childNodes[i].start, join(index(join(path, "children"), i), "start_action"),
					"%s needs one remote address to initiate to (remote.addrs is %s)", ch.StartAction, remoteAddrsString(c.Remote.Addrs))
			}
		}
	}
	if c.Remote.Auth == AuthPSK && c.Remote.CAFile != "" {
		d.errorf(caN, join(path, "remote.ca"), "applies only to auth: pubkey")
	}

	// References into secrets and pools are resolved once the whole file
	// is read, because those sections may come after the connections.
	d.later = append(d.later, func() {
		if usesPSK && c.PSKName != "" {
			if psk, ok := r.secrets[c.PSKName]; ok {
				c.PSK = psk
			} else {
				d.errorf(pskN, join(path, "psk"), "no secret named %q in secrets", c.PSKName)
			}
		}
		for i, name := range poolNames {
			pool := r.pools[name]
			if pool == nil {
				d.errorf(poolNodes[i], index(join(path, "pools"), i), "no pool named %q in pools", name)
				continue
			}
			c.Pools = append(c.Pools, pool)
		}
		d.checkPoolOverlap(c, path, childNodes, r)
	})
	return c
}

type childPos struct {
	name    *yaml.Node
	start   *yaml.Node
	localTS []*yaml.Node
}

// checkPoolOverlap rejects a pool that hands out addresses this gateway
// claims for its own side: a client would get an address inside a local
// selector, so the policy for its own virtual IP points the wrong way.
// A selector for the whole address family (0.0.0.0/0, ::/0) is exempt:
// that is a full tunnel, not a subnet.
func (d *decoder) checkPoolOverlap(c *Connection, path string, pos []childPos, r *refs) {
	for ci, ch := range c.Children {
		if ci >= len(pos) {
			break
		}
		for ti, ts := range ch.LocalTS {
			rg, ok := ts.Range()
			if !ok || ti >= len(pos[ci].localTS) || rg == prefixRange(netip.PrefixFrom(rg.From, 0)) {
				continue
			}
			for _, pool := range c.Pools {
				for _, pr := range pool.Ranges {
					if pr.Overlaps(rg) {
						d.errorf(pos[ci].localTS[ti], index(join(index(join(path, "children"), ci), "local_ts"), ti),
							"%s overlaps virtual-IP pool %q (%s, line %d): clients would get addresses on the local side",
							rg, pool.Name, pr, r.poolPos[pool].Line)
					}
				}
			}
		}
	}
}

func (d *decoder) auth(n *yaml.Node, path string, dst *Auth) bool {
	var s string
	if !d.enum(n, path, []string{string(AuthPSK), string(AuthPubkey)}, &s) {
		return false
	}
	*dst = Auth(s)
	return true
}

func (d *decoder) local(n *yaml.Node, path string, l *Local) {
	var certN, keyN *yaml.Node
	seen := d.mapping(n, path, []field{
		{"addrs", false, func(n *yaml.Node, p string) { d.addrs(n, p, &l.Addrs) }},
		{"id", false, func(n *yaml.Node, p string) { d.identity(n, p, false, &l.ID) }},
		{"auth", true, func(n *yaml.Node, p string) { d.auth(n, p, &l.Auth) }},
		{"cert", false, func(n *yaml.Node, p string) { certN = n; d.path(n, p, &l.CertFile) }},
		{"key", false, func(n *yaml.Node, p string) { keyN = n; d.path(n, p, &l.KeyFile) }},
	})
	if l.Auth != AuthPubkey {
		if certN != nil {
			d.errorf(certN, join(path, "cert"), "applies only to auth: pubkey")
		}
		if keyN != nil {
			d.errorf(keyN, join(path, "key"), "applies only to auth: pubkey")
		}
		return
	}
	rn := peek(n)
	for _, k := range []string{"cert", "key"} {
		if !seen[k] {
			d.errorf(rn, path, "missing required key %q: auth pubkey needs a certificate and its private key", k)
		}
	}
	if l.CertFile != "" {
		certs, err := readCerts(l.CertFile)
		if err != nil {
			d.errorf(certN, join(path, "cert"), "%v", err)
		} else {
			l.Cert, l.Chain = certs[0], certs[1:]
		}
	}
	if l.KeyFile != "" {
		key, err := readKey(l.KeyFile)
		if err != nil {
			d.errorf(keyN, join(path, "key"), "%v", err)
		} else {
			l.Key = PrivateKey{key}
		}
	}
	if l.Cert != nil && l.Key.s != nil && !keyMatches(l.Cert, l.Key.s) {
		d.errorf(keyN, join(path, "key"), "%s is not the private key of the certificate in %s", l.KeyFile, l.CertFile)
	}
	if l.Cert != nil && !seen["id"] {
		// The identity a certificate proves is its subject.
		l.ID = Identity{Type: wire.ID_DER_ASN1_DN, Value: dnString(l.Cert.RawSubject), Data: l.Cert.RawSubject}
	}
}

// remote decodes the peer side; it reports whether auth was given and
// where ca was set.
func (d *decoder) remote(n *yaml.Node, path string, r *Remote) (bool, *yaml.Node) {
	var caN *yaml.Node
	seen := d.mapping(n, path, []field{
		{"addrs", false, func(n *yaml.Node, p string) { d.remoteAddrs(n, p, &r.Addrs) }},
		{"id", false, func(n *yaml.Node, p string) { d.identity(n, p, true, &r.ID) }},
		{"auth", false, func(n *yaml.Node, p string) { d.auth(n, p, &r.Auth) }},
		{"ca", false, func(n *yaml.Node, p string) { caN = n; d.path(n, p, &r.CAFile) }},
	})
	if r.CAFile != "" {
		cas, err := readCerts(r.CAFile)
		if err != nil {
			d.errorf(caN, join(path, "ca"), "%v", err)
		} else {
			for _, ca := range cas {
				if !ca.IsCA {
					d.errorf(caN, join(path, "ca"), "%s: certificate %q is not a CA certificate", r.CAFile, ca.Subject.CommonName)
				}
			}
			r.CAs = cas
		}
	}
	return seen["auth"], caN
}

func (d *decoder) identity(n *yaml.Node, path string, patternOK bool, dst *Identity) {
	var s string
	if !d.str(n, path, &s) {
		return
	}
	id, err := ParseIdentity(s, patternOK)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	*dst = id
}

// remoteAddrs accepts addresses, CIDRs and %any/any; "any" empties the
// list, which means any address.
func (d *decoder) remoteAddrs(n *yaml.Node, path string, dst *[]netip.Prefix) {
	any := false
	d.sequence(n, path, true, func(i int, n *yaml.Node, p string) {
		var s string
		if !d.str(n, p, &s) {
			return
		}
		if s == "%any" || s == "any" || s == "%any6" || s == "%any4" {
			any = true
			return
		}
		var pfx netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if pfx, err = netip.ParsePrefix(s); err != nil {
				d.errorf(n, p, "%q is not an address or CIDR", s)
				return
			}
			if pfx.Masked() != pfx {
				d.errorf(n, p, "%q has host bits set (did you mean %s?)", s, pfx.Masked())
				return
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				d.errorf(n, p, "%q is not an IP address or CIDR (host names are not supported)", s)
				return
			}
			a = a.Unmap()
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		*dst = append(*dst, pfx)
	})
	if any {
		*dst = nil
	}
}

func (d *decoder) proposals(n *yaml.Node, path string, proto wire.ProtocolID, dst *[]Proposal) {
	*dst = nil
	d.sequence(n, path, true, func(i int, n *yaml.Node, p string) {
		var s string
		if !d.str(n, p, &s) {
			return
		}
		prop, err := ParseProposal(proto, s)
		if err != nil {
			d.errorf(n, p, "%v", err)
			return
		}
		*dst = append(*dst, prop)
	})
	if rn := peek(n); rn != nil && rn.Kind == yaml.SequenceNode && len(rn.Content) == 0 {
		d.errorf(rn, path, "empty list; omit the key for the defaults")
	}
}

func defaultProposals(proto wire.ProtocolID, texts []string) []Proposal {
	out := make([]Proposal, 0, len(texts))
	for _, t := range texts {
		p, err := ParseProposal(proto, t)
		if err != nil {
			panic("config: bad default proposal " + t) // caught by tests
		}
		out = append(out, p)
	}
	return out
}

func (d *decoder) ike(n *yaml.Node, path string, ike *IKE) {
	var rekeyN, lifeN *yaml.Node
	seen := d.mapping(n, path, []field{
		{"proposals", false, func(n *yaml.Node, p string) { d.proposals(n, p, wire.ProtoIKE, &ike.Proposals) }},
		{"rekey_time", false, func(n *yaml.Node, p string) { rekeyN = n; d.duration(n, p, &ike.RekeyTime) }},
		{"lifetime", false, func(n *yaml.Node, p string) { lifeN = n; d.duration(n, p, &ike.Lifetime) }},
		{"reauth", false, func(n *yaml.Node, p string) { d.boolean(n, p, &ike.Reauth) }},
	})
	if !seen["proposals"] {
		ike.Proposals = defaultProposals(wire.ProtoIKE, DefaultIKEProposals)
	}
	rk, lf := uint64(ike.RekeyTime), uint64(ike.Lifetime)
	d.softHard(path, "rekey_time", "lifetime", rekeyN, lifeN, &rk, &lf, uint64(DefaultIKERekeyTime), fmtDur)
	ike.RekeyTime, ike.Lifetime = time.Duration(rk), time.Duration(lf)
}

func fmtDur(v uint64) string   { return time.Duration(v).String() }
func fmtCount(v uint64) string { return strconv.FormatUint(v, 10) }

// softHard fills in whichever of a soft (rekey) and hard (expiry) limit is
// missing, 10% apart like strongSwan's default margin, and rejects a soft
// limit at or above the hard one: the SA would expire before it rekeys.
// 0 means "no limit" for either.
func (d *decoder) softHard(path, softKey, hardKey string, softN, hardN *yaml.Node, soft, hard *uint64, def uint64, format func(uint64) string) {
	switch {
	case softN == nil && hardN == nil:
		*soft = def
		*hard = def + def/10
	case hardN == nil:
		*hard = *soft + *soft/10
	case softN == nil:
		*soft = *hard - *hard/10
	case *soft != 0 && *hard != 0 && *soft >= *hard:
		d.errorf(softN, join(path, softKey), "%s must be less than %s (%s), or the SA expires before it is rekeyed",
			format(*soft), hardKey, format(*hard))
	}
}

func (d *decoder) child(n *yaml.Node, path string) (*Child, childPos) {
	ch := &Child{Mode: ModeTunnel, StartAction: StartNone}
	var pos childPos
	var rekeyT, lifeT, rekeyB, lifeB, rekeyP, lifeP *yaml.Node
	var rt, lt time.Duration
	seen := d.mapping(n, path, []field{
		{"name", true, func(n *yaml.Node, p string) { pos.name = n; d.name(n, p, &ch.Name) }},
		{"local_ts", false, func(n *yaml.Node, p string) {
			d.selectors(n, p, &ch.LocalTS, &pos.localTS)
		}},
		{"remote_ts", false, func(n *yaml.Node, p string) { d.selectors(n, p, &ch.RemoteTS, nil) }},
		{"esp", false, func(n *yaml.Node, p string) {
			d.mapping(n, p, []field{
				{"proposals", true, func(n *yaml.Node, p string) { d.proposals(n, p, wire.ProtoESP, &ch.ESP) }},
			})
		}},
		{"mode", false, func(n *yaml.Node, p string) { d.enum(n, p, []string{ModeTunnel}, &ch.Mode) }},
		{"start_action", false, func(n *yaml.Node, p string) {
			pos.start = n
			d.enum(n, p, []string{StartNone, StartTrap, StartStart}, &ch.StartAction)
		}},
		{"rekey_time", false, func(n *yaml.Node, p string) { rekeyT = n; d.duration(n, p, &rt) }},
		{"lifetime", false, func(n *yaml.Node, p string) { lifeT = n; d.duration(n, p, &lt) }},
		{"rekey_bytes", false, func(n *yaml.Node, p string) { rekeyB = n; d.size(n, p, &ch.Rekey.Bytes) }},
		{"life_bytes", false, func(n *yaml.Node, p string) { lifeB = n; d.size(n, p, &ch.Life.Bytes) }},
		{"rekey_packets", false, func(n *yaml.Node, p string) { rekeyP = n; d.count(n, p, &ch.Rekey.Packets) }},
		{"life_packets", false, func(n *yaml.Node, p string) { lifeP = n; d.count(n, p, &ch.Life.Packets) }},
	})
	if peek(n) == nil {
		return nil, pos
	}
	if !seen["esp"] || ch.ESP == nil {
		ch.ESP = defaultProposals(wire.ProtoESP, DefaultESPProposals)
	}
	if len(ch.LocalTS) == 0 && !seen["local_ts"] {
		ch.LocalTS = []TrafficSelector{{Dynamic: true}}
	}
	if len(ch.RemoteTS) == 0 && !seen["remote_ts"] {
		ch.RemoteTS = []TrafficSelector{{Dynamic: true}}
	}
	rk, lf := uint64(rt), uint64(lt)
	d.softHard(path, "rekey_time", "lifetime", rekeyT, lifeT, &rk, &lf, uint64(DefaultChildRekeyTime), fmtDur)
	ch.Rekey.Time, ch.Life.Time = time.Duration(rk), time.Duration(lf)
	if rekeyB != nil || lifeB != nil {
		d.softHard(path, "rekey_bytes", "life_bytes", rekeyB, lifeB, &ch.Rekey.Bytes, &ch.Life.Bytes, 0, fmtCount)
	}
	if rekeyP != nil || lifeP != nil {
		d.softHard(path, "rekey_packets", "life_packets", rekeyP, lifeP, &ch.Rekey.Packets, &ch.Life.Packets, 0, fmtCount)
	}
	return ch, pos
}

var protoNames = map[string]uint8{"any": 0, "icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}

// selectors decodes a traffic selector list; nodes, if not nil, receives
// the node of each decoded selector for later error positions.
func (d *decoder) selectors(n *yaml.Node, path string, dst *[]TrafficSelector, nodes *[]*yaml.Node) {
	d.sequence(n, path, true, func(i int, n *yaml.Node, p string) {
		var s string
		if !d.str(n, p, &s) {
			return
		}
		ts, err := ParseTrafficSelector(s)
		if err != nil {
			d.errorf(n, p, "%v", err)
			return
		}
		*dst = append(*dst, ts)
		if nodes != nil {
			*nodes = append(*nodes, n)
		}
	})
}

// ParseTrafficSelector parses "10.1.0.0/16", "10.1.0.5", "10.1.0.5-10.1.0.9"
// or "dynamic", each optionally followed by "[proto]", "[proto/port]" or
// "[proto/from-to]" where proto is tcp, udp, icmp, icmpv6, sctp, gre, any
// or a number.
func ParseTrafficSelector(s string) (TrafficSelector, error) {
	ts := TrafficSelector{PortTo: 65535}
	addr, sel, hasSel := strings.Cut(strings.TrimSpace(s), "[")
	if hasSel {
		var ok bool
		if sel, ok = strings.CutSuffix(sel, "]"); !ok {
			return ts, fmt.Errorf("%q: missing ']'", s)
		}
		proto, ports, hasPort := strings.Cut(sel, "/")
		if v, ok := protoNames[strings.ToLower(proto)]; ok {
			ts.Proto = v
		} else if v, err := strconv.ParseUint(proto, 10, 8); err == nil {
			ts.Proto = uint8(v)
		} else {
			return ts, fmt.Errorf("%q: unknown protocol %q (expected tcp, udp, icmp, icmpv6, sctp, gre, any or a number)", s, proto)
		}
		if hasPort {
			if ts.Proto == 0 {
				return ts, fmt.Errorf("%q: a port needs a protocol", s)
			}
			lo, hi, isRange := strings.Cut(ports, "-")
			a, err1 := strconv.ParseUint(lo, 10, 16)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.ParseUint(hi, 10, 16)
			}
			if err1 != nil || err2 != nil || b < a {
				return ts, fmt.Errorf("%q: bad port or port range %q", s, ports)
			}
			ts.PortFrom, ts.PortTo = uint16(a), uint16(b)
		}
	}
	if strings.EqualFold(addr, "dynamic") {
		ts.Dynamic = true
		return ts, nil
	}
	if strings.Contains(addr, "-") {
		r, err := parsePoolRange(addr)
		if err != nil {
			return ts, err
		}
		ts.From, ts.To = r.From, r.To
		return ts, nil
	}
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return ts, fmt.Errorf("%q is not a CIDR, address, range or \"dynamic\"", s)
		}
		if p.Masked() != p {
			return ts, fmt.Errorf("%q has host bits set (did you mean %s?)", addr, p.Masked())
		}
		r := prefixRange(p)
		ts.From, ts.To = r.From, r.To
		return ts, nil
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return ts, fmt.Errorf("%q is not a CIDR, address, range or \"dynamic\"", s)
	}
	ts.From, ts.To = a.Unmap(), a.Unmap()
	return ts, nil
}

func (ts TrafficSelector) String() string {
	var b strings.Builder
	if ts.Dynamic {
		b.WriteString("dynamic")
	} else {
		r := AddrRange{ts.From, ts.To}
		if p, ok := rangePrefix(r); ok {
			b.WriteString(p.String())
		} else {
			b.WriteString(r.String())
		}
	}
	if ts.Proto != 0 || ts.PortFrom != 0 || ts.PortTo != 65535 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(int(ts.Proto)))
		if ts.PortFrom != 0 || ts.PortTo != 65535 {
			b.WriteByte('/')
			b.WriteString(strconv.Itoa(int(ts.PortFrom)))
			if ts.PortTo != ts.PortFrom {
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(int(ts.PortTo)))
			}
		}
		b.WriteByte(']')
	}
	return b.String()
}

// rangePrefix returns the CIDR equal to r, if there is one.
func rangePrefix(r AddrRange) (netip.Prefix, bool) {
	for bits := 0; bits <= r.From.BitLen(); bits++ {
		p := netip.PrefixFrom(r.From, bits)
		if p.Masked().Addr() == r.From && prefixRange(p).To == r.To {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (d *decoder) dpd(n *yaml.Node, path string, dpd *DPD) {
	d.mapping(n, path, []field{
		{"delay", false, func(n *yaml.Node, p string) {
			if d.duration(n, p, &dpd.Delay) && dpd.Delay <= 0 {
				d.errorf(n, p, "must be greater than 0")
			}
		}},
		{"timeout", false, func(n *yaml.Node, p string) {
			if d.duration(n, p, &dpd.Timeout) && dpd.Timeout <= 0 {
				d.errorf(n, p, "must be greater than 0")
			}
		}},
	})
}

func (d *decoder) rfc6311(n *yaml.Node, path string, r *RFC6311) {
	d.mapping(n, path, []field{
		{"message_id_sync", false, func(n *yaml.Node, p string) { d.boolean(n, p, &r.MessageIDSync) }},
		{"replay_counter_sync", false, func(n *yaml.Node, p string) { d.boolean(n, p, &r.ReplayCounterSync) }},
		{"outbound_jump", false, func(n *yaml.Node, p string) {
			if rn := peek(n); rn != nil && rn.Kind == yaml.ScalarNode && rn.Value == "auto" {
				r.OutboundJump = 0
				return
			}
			var v uint64
			if !d.count(n, p, &v) {
				return
			}
			if v == 0 || v > 1<<62 {
				d.errorf(n, p, "%d is out of range (auto, or 1 to 2^62)", v)
				return
			}
			r.OutboundJump = v
		}},
		{"margin", false, func(n *yaml.Node, p string) {
			var v int64
			if d.integer(n, p, 0, 1<<16, &v) {
				r.Margin = uint32(v)
			}
		}},
	})
}

func remoteAddrsString(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "any"
	}
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}
