package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults, named so that docs/config.md and the code cannot drift apart
// unnoticed: TestDocsCoverSchema looks for each one in the reference.
const (
	DefaultPort                    = 500
	DefaultNATTPort                = 4500
	DefaultControlSocket           = "/run/hike/control.sock"
	DefaultTUN                     = "hike0"
	DefaultTUNMTU                  = 1400
	DefaultHalfOpenCookieThreshold = 1000
	DefaultIKERekeyTime            = 4 * time.Hour
	DefaultChildRekeyTime          = time.Hour
	DefaultDPDDelay                = 30 * time.Second
	DefaultDPDTimeout              = 150 * time.Second
	DefaultNATKeepalive            = 20 * time.Second
	DefaultWindowSize              = 1
	MaxWindowSize                  = 64
	DefaultRFC6311Margin           = 16
	DefaultHeartbeatTimeout        = 500 * time.Millisecond
	DefaultElectionTimeout         = time.Second
	MinClusterVoters               = 3
	MaxClusterVoters               = 7
)

// refs holds what one section defines for another to reference; the
// references are resolved in decoder.later, once the whole file is read.
type refs struct {
	secrets map[string]Secret
	pools   map[string]*Pool
	order   []*Pool // pools in file order, for deterministic checks
	poolPos map[*Pool]*yaml.Node
	conns   map[string]int // connection name -> line of first use
}

func (d *decoder) config(n *yaml.Node, c *Config) {
	r := &refs{secrets: map[string]Secret{}, pools: map[string]*Pool{}, poolPos: map[*Pool]*yaml.Node{}, conns: map[string]int{}}
	c.Listen = Listen{Addrs: []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}, Port: DefaultPort, NATTPort: DefaultNATTPort}
	c.ControlSocket = DefaultControlSocket
	c.Log = Log{Level: slog.LevelInfo, Format: "text"}
	c.Dataplane = Dataplane{Kind: DataplaneAuto, TUN: DefaultTUN, TUNMTU: DefaultTUNMTU}
	c.Limits = Limits{HalfOpenCookieThreshold: DefaultHalfOpenCookieThreshold}
	var connNode *yaml.Node
	d.mapping(n, "", []field{
		{"listen", false, func(n *yaml.Node, p string) { d.listen(n, p, &c.Listen) }},
		{"control_socket", false, func(n *yaml.Node, p string) { d.path(n, p, &c.ControlSocket) }},
		{"metrics", false, func(n *yaml.Node, p string) { d.hostPort(n, p, &c.Metrics) }},
		{"log", false, func(n *yaml.Node, p string) { d.log(n, p, &c.Log) }},
		{"dataplane", false, func(n *yaml.Node, p string) { d.dataplane(n, p, &c.Dataplane) }},
		{"state", false, func(n *yaml.Node, p string) { c.State = d.state(n, p) }},
		{"limits", false, func(n *yaml.Node, p string) { d.limits(n, p, &c.Limits) }},
		{"secrets", false, func(n *yaml.Node, p string) { d.secrets(n, p, r) }},
		{"pools", false, func(n *yaml.Node, p string) { c.Pools = d.pools(n, p, r) }},
		{"connections", false, func(n *yaml.Node, p string) {
			connNode = n
			d.sequence(n, p, false, func(i int, n *yaml.Node, p string) {
				if conn := d.connection(n, p, r); conn != nil {
					c.Connections = append(c.Connections, conn)
				}
			})
		}},
		{"cluster", false, func(n *yaml.Node, p string) { c.Cluster = d.cluster(n, p, r) }},
	})
	d.later = append(d.later, func() {
		if c.Cluster == nil || len(c.Connections) == 0 {
			return
		}
		if self := c.Cluster.Self(); self != nil && self.Witness {
			d.errorf(connNode, "connections", "node %q is a witness: it runs no data plane, so it takes no connections", self.ID)
		}
	})
}

func (d *decoder) listen(n *yaml.Node, path string, l *Listen) {
	var portN *yaml.Node
	d.mapping(n, path, []field{
		{"addrs", false, func(n *yaml.Node, p string) {
			l.Addrs = nil
			d.addrs(n, p, &l.Addrs)
			if rn := peek(n); rn != nil && rn.Kind == yaml.SequenceNode && len(rn.Content) == 0 {
				d.errorf(rn, p, "empty list: IKE would be served nowhere; omit the key for all addresses")
			}
		}},
		{"port", false, func(n *yaml.Node, p string) { d.port(n, p, &l.Port) }},
		{"natt_port", false, func(n *yaml.Node, p string) { portN = n; d.port(n, p, &l.NATTPort) }},
	})
	if l.Port == l.NATTPort {
		d.errorf(portN, join(path, "natt_port"), "must differ from port (%d)", l.Port)
	}
}

func (d *decoder) port(n *yaml.Node, path string, dst *uint16) {
	var v int64
	if d.integer(n, path, 1, 65535, &v) {
		*dst = uint16(v)
	}
}

// addrs decodes a list of IP addresses, rejecting duplicates.
func (d *decoder) addrs(n *yaml.Node, path string, dst *[]netip.Addr) {
	d.sequence(n, path, true, func(i int, n *yaml.Node, p string) {
		var s string
		if !d.str(n, p, &s) {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.errorf(n, p, "%q is not an IP address", s)
			return
		}
		for _, b := range *dst {
			if a == b {
				d.errorf(n, p, "%s is listed twice", a)
				return
			}
		}
		*dst = append(*dst, a)
	})
}

func (d *decoder) hostPort(n *yaml.Node, path string, dst *string) {
	var s string
	if !d.str(n, path, &s) {
		return
	}
	if err := checkHostPort(s); err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	*dst = s
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:9810 or [::1]:9810)", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port must be 1 to 65535", s)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: invalid host", s)
	}
	return nil
}

var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func (d *decoder) log(n *yaml.Node, path string, l *Log) {
	d.mapping(n, path, []field{
		{"level", false, func(n *yaml.Node, p string) {
			var s string
			if d.enum(n, p, []string{"debug", "info", "warn", "error"}, &s) {
				l.Level = logLevels[s]
			}
		}},
		{"format", false, func(n *yaml.Node, p string) { d.enum(n, p, []string{"text", "json"}, &l.Format) }},
	})
}

func (d *decoder) dataplane(n *yaml.Node, path string, dp *Dataplane) {
	d.mapping(n, path, []field{
		{"kind", false, func(n *yaml.Node, p string) {
			d.enum(n, p, []string{DataplaneAuto, DataplaneUserspace, DataplaneXFRM}, &dp.Kind)
		}},
		{"tun_name", false, func(n *yaml.Node, p string) {
			var s string
			if !d.str(n, p, &s) {
				return
			}
			// IFNAMSIZ is 16 including the terminating NUL.
			if s == "" || len(s) > 15 || strings.ContainsAny(s, "/ \t\n:") {
				d.errorf(n, p, "%q is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)", s)
				return
			}
			dp.TUN = s
		}},
		{"tun_mtu", false, func(n *yaml.Node, p string) { d.intField(n, p, 576, 9216, &dp.TUNMTU) }},
	})
}

func (d *decoder) state(n *yaml.Node, path string) *State {
	s := &State{}
	var keyN *yaml.Node
	seen := d.mapping(n, path, []field{
		{"path", true, func(n *yaml.Node, p string) { d.path(n, p, &s.Path) }},
		{"key_file", true, func(n *yaml.Node, p string) { keyN = n; d.path(n, p, &s.KeyFile) }},
	})
	if seen["key_file"] && s.KeyFile != "" {
		k, err := readStateKey(s.KeyFile)
		if err != nil {
			d.errorf(keyN, join(path, "key_file"), "%v", err)
		}
		s.Key = k
	}
	return s
}

func (d *decoder) limits(n *yaml.Node, path string, l *Limits) {
	const max = 1 << 30
	d.mapping(n, path, []field{
		{"half_open_cookie_threshold", false, func(n *yaml.Node, p string) { d.intField(n, p, 0, max, &l.HalfOpenCookieThreshold) }},
		{"half_open_max", false, func(n *yaml.Node, p string) { d.intField(n, p, 0, max, &l.HalfOpenMax) }},
		{"ike_sas_max", false, func(n *yaml.Node, p string) { d.intField(n, p, 0, max, &l.IKESAsMax) }},
	})
}

func (d *decoder) secrets(n *yaml.Node, path string, r *refs) {
	d.redact++
	defer func() { d.redact-- }()
	d.dict(n, path, func(key string, k, v *yaml.Node, p string) {
		var psk Secret
		var pskN *yaml.Node
		seen := d.mapping(v, p, []field{
			{"psk", false, func(n *yaml.Node, p string) {
				pskN = n
				var s string
				if !d.str(n, p, &s) {
					return
				}
				sec, err := parsePSK(s)
				if err != nil {
					d.errorf(n, p, "%v", err)
				}
				psk = sec
			}},
			{"psk_file", false, func(n *yaml.Node, p string) {
				pskN = n
				var f string
				if !d.path(n, p, &f) {
					return
				}
				data, err := readFile(f)
				if err != nil {
					d.errorf(n, p, "%v", err)
					return
				}
				sec, err := parsePSK(strings.TrimSpace(string(data)))
				if err != nil {
					d.errorf(n, p, "%s: %v", f, err)
				}
				psk = sec
			}},
		})
		switch {
		case seen["psk"] && seen["psk_file"]:
			d.errorf(pskN, p, "set psk or psk_file, not both")
		case !seen["psk"] && !seen["psk_file"] && peek(v) != nil && peek(v).Kind == yaml.MappingNode && !isNull(peek(v)):
			d.errorf(v, p, "missing required key \"psk\" or \"psk_file\"")
		}
		r.secrets[key] = psk
	})
}

func (d *decoder) pools(n *yaml.Node, path string, r *refs) []*Pool {
	var out []*Pool
	d.dict(n, path, func(key string, k, v *yaml.Node, p string) {
		pool := &Pool{Name: key}
		addrs := func(n *yaml.Node, p string) {
			d.sequence(n, p, true, func(i int, n *yaml.Node, p string) {
				var s string
				if !d.str(n, p, &s) {
					return
				}
				rg, err := parsePoolRange(s)
				if err != nil {
					d.errorf(n, p, "%v", err)
					return
				}
				for _, o := range pool.Ranges {
					if o.Overlaps(rg) {
						d.errorf(n, p, "%s overlaps %s in the same pool", rg, o)
						return
					}
				}
				for _, other := range out {
					for _, o := range other.Ranges {
						if o.Overlaps(rg) {
							d.errorf(n, p, "%s overlaps pool %q (%s, line %d)", rg, other.Name, o, r.poolPos[other].Line)
							return
						}
					}
				}
				pool.Ranges = append(pool.Ranges, rg)
			})
		}
		if rv := peek(v); rv != nil && rv.Kind != yaml.MappingNode {
			addrs(v, p)
		} else {
			d.mapping(v, p, []field{
				{"addrs", true, addrs},
				{"dns", false, func(n *yaml.Node, p string) { d.addrs(n, p, &pool.DNS) }},
			})
		}
		r.pools[key] = pool
		r.order = append(r.order, pool)
		r.poolPos[pool] = k
		out = append(out, pool)
	})
	return out
}

// parsePoolRange accepts "10.3.0.0/24", "10.3.0.10-10.3.0.99" or a single
// address. A CIDR leaves out its network address, and for IPv4 its
// broadcast address, which a client must not be given.
func parsePoolRange(s string) (AddrRange, error) {
	if from, to, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(from))
		b, err2 := netip.ParseAddr(strings.TrimSpace(to))
		switch {
		case err1 != nil || err2 != nil || a.Zone() != "" || b.Zone() != "":
			return AddrRange{}, fmt.Errorf("%q is not an address range (like 10.3.0.10-10.3.0.99)", s)
		case a.Is4() != b.Is4():
			return AddrRange{}, fmt.Errorf("%q mixes IPv4 and IPv6", s)
		case b.Less(a):
			return AddrRange{}, fmt.Errorf("%q: the range ends before it starts", s)
		}
		return AddrRange{a.Unmap(), b.Unmap()}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return AddrRange{}, fmt.Errorf("%q is not a CIDR (like 10.3.0.0/24)", s)
		}
		if p.Masked() != p {
			return AddrRange{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
		}
		r := prefixRange(p)
		if p.Addr().Is4() && p.Bits() <= 30 {
			r.From, r.To = r.From.Next(), r.To.Prev()
		} else if p.Addr().Is6() && p.Bits() <= 126 {
			r.From = r.From.Next()
		}
		return r, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return AddrRange{}, fmt.Errorf("%q is not an address, range or CIDR", s)
	}
	return AddrRange{a.Unmap(), a.Unmap()}, nil
}

func prefixRange(p netip.Prefix) AddrRange {
	p = p.Masked()
	from := p.Addr()
	b := from.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	to, _ := netip.AddrFromSlice(b)
	return AddrRange{from, to}
}

func readFile(path string) ([]byte, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	return data, nil
}
