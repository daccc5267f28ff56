package config

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (d *decoder) cluster(n *yaml.Node, path string, r *refs) *Cluster {
	c := &Cluster{HeartbeatTimeout: DefaultHeartbeatTimeout, ElectionTimeout: DefaultElectionTimeout}
	var nodeIDN, peersN, electionN, keyFileN *yaml.Node
	var vipNodes [][]*yaml.Node
	d.mapping(n, path, []field{
		{"node_id", true, func(n *yaml.Node, p string) { nodeIDN = n; d.name(n, p, &c.NodeID) }},
		{"peers", true, func(n *yaml.Node, p string) {
			peersN = n
			ids, addrs := map[string]int{}, map[string]int{}
			d.sequence(n, p, false, func(i int, n *yaml.Node, p string) {
				peer, idN, addrN, vns := d.peer(n, p)
				if peer.ID != "" {
					if l, dup := ids[peer.ID]; dup {
						d.errorf(idN, join(p, "id"), "duplicate node id %q (first used on line %d)", peer.ID, l)
					}
					ids[peer.ID] = idN.Line
				}
				if peer.Address != "" {
					if l, dup := addrs[peer.Address]; dup {
						d.errorf(addrN, join(p, "address"), "address %s is already used by another node (line %d)", peer.Address, l)
					}
					addrs[peer.Address] = addrN.Line
				}
				c.Peers = append(c.Peers, peer)
				vipNodes = append(vipNodes, vns)
			})
		}},
		{"data_dir", true, func(n *yaml.Node, p string) { d.path(n, p, &c.DataDir) }},
		{"key_file", false, func(n *yaml.Node, p string) {
			keyFileN = n
			if !d.path(n, p, &c.KeyFile) {
				return
			}
			// Read only to check the form now rather than at the first
			// takeover; the cluster package reads it again and keeps it.
			k, err := readStateKey(c.KeyFile)
			if err != nil {
				d.errorf(n, p, "%v", err)
				return
			}
			clear(k.Bytes())
		}},
		{"interface", false, func(n *yaml.Node, p string) {
			var s string
			if d.str(n, p, &s) {
				if s == "" || len(s) > 15 || strings.ContainsAny(s, "/ \t\n:") {
					d.errorf(n, p, "%q is not a valid interface name", s)
					return
				}
				c.Interface = s
			}
		}},
		{"tls", true, func(n *yaml.Node, p string) { d.clusterTLS(n, p, &c.TLS) }},
		{"heartbeat_timeout", false, func(n *yaml.Node, p string) {
			if d.duration(n, p, &c.HeartbeatTimeout) && c.HeartbeatTimeout < 5e6 {
				d.errorf(n, p, "must be at least 5ms")
			}
		}},
		{"election_timeout", false, func(n *yaml.Node, p string) {
			electionN = n
			if d.duration(n, p, &c.ElectionTimeout) && c.ElectionTimeout < 5e6 {
				d.errorf(n, p, "must be at least 5ms")
			}
		}},
	})
	if peersN != nil {
		// Raft needs a majority: with two voters, losing either stops
		// the cluster, which is worse than no cluster at all.
		switch v := len(c.Peers); {
		case v < MinClusterVoters:
			d.errorf(peek(peersN), join(path, "peers"), "%d voter(s); a cluster needs at least %d (add a node, or a `hike witness` for a pair)", v, MinClusterVoters)
		case v > MaxClusterVoters:
			d.errorf(peek(peersN), join(path, "peers"), "%d voters; at most %d are supported", v, MaxClusterVoters)
		}
		if c.NodeID != "" && c.Self() == nil {
			d.errorf(nodeIDN, join(path, "node_id"), "node %q is not in peers", c.NodeID)
		}
	}
	// Every data node seals the SA records it replicates and opens those
	// it takes over; a witness only votes and never sees them in the clear.
	if self := c.Self(); self != nil && !self.Witness && keyFileN == nil {
		d.errorf(peek(n), path, "missing required key %q (the cluster key; only a witness needs none)", "key_file")
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		at := electionN
		if at == nil {
			at = peek(n)
		}
		d.errorf(at, join(path, "election_timeout"), "%s is shorter than heartbeat_timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	// A VIP served by two nodes is split brain by configuration.
	type owner struct {
		id   string
		line int
	}
	owners := map[netip.Addr]owner{}
	for i, p := range c.Peers {
		for j, v := range p.VIPs {
			vn := vipNodes[i][j]
			vp := index(join(index(join(path, "peers"), i), "vips"), j)
			if o, dup := owners[v.Addr()]; dup {
				d.errorf(vn, vp, "VIP %s is also owned by node %q (line %d)", v.Addr(), o.id, o.line)
				continue
			}
			owners[v.Addr()] = owner{p.ID, vn.Line}
		}
	}
	// Pools are decoded independently of the cluster; compare once both
	// are known.
	d.later = append(d.later, func() {
		for i, p := range c.Peers {
			for j, v := range p.VIPs {
				for _, pool := range r.order {
					for _, pr := range pool.Ranges {
						if pr.Contains(v.Addr()) {
							d.errorf(vipNodes[i][j], index(join(index(join(path, "peers"), i), "vips"), j),
								"VIP %s lies in virtual-IP pool %q (%s)", v.Addr(), pool.Name, pr)
						}
					}
				}
			}
		}
	})
	return c
}

func (d *decoder) peer(n *yaml.Node, path string) (p Peer, idN, addrN *yaml.Node, vipNodes []*yaml.Node) {
	var vipsN *yaml.Node
	d.mapping(n, path, []field{
		{"id", true, func(n *yaml.Node, path string) { idN = n; d.name(n, path, &p.ID) }},
		{"address", true, func(n *yaml.Node, path string) { addrN = n; d.hostPort(n, path, &p.Address) }},
		{"witness", false, func(n *yaml.Node, path string) { d.boolean(n, path, &p.Witness) }},
		{"vips", false, func(n *yaml.Node, path string) {
			vipsN = n
			d.sequence(n, path, true, func(i int, n *yaml.Node, path string) {
				var s string
				if !d.str(n, path, &s) {
					return
				}
				v, err := parseVIP(s)
				if err != nil {
					d.errorf(n, path, "%v", err)
					return
				}
				p.VIPs = append(p.VIPs, v)
				vipNodes = append(vipNodes, n)
			})
		}},
	})
	if p.Witness && len(p.VIPs) > 0 {
		d.errorf(vipsN, join(path, "vips"), "a witness owns no VIPs (it has no data plane)")
	}
	return p, idN, addrN, vipNodes
}

// parseVIP accepts "192.0.2.10/24" (the address with the prefix length of
// its subnet, as it is added to the interface) or a bare address, which
// gets a host prefix.
func parseVIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return p, fmt.Errorf("%q is not an address with prefix length (like 192.0.2.10/24)", s)
		}
		if p.Addr().Is4In6() {
			return p, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 address with its prefix length (like 192.0.2.10/24)", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (d *decoder) clusterTLS(n *yaml.Node, path string, t *TLSFiles) {
	var caN, certN, keyN *yaml.Node
	d.mapping(n, path, []field{
		{"ca", true, func(n *yaml.Node, p string) { caN = n; d.path(n, p, &t.CAFile) }},
		{"cert", true, func(n *yaml.Node, p string) { certN = n; d.path(n, p, &t.CertFile) }},
		{"key", true, func(n *yaml.Node, p string) { keyN = n; d.path(n, p, &t.KeyFile) }},
	})
	if t.CAFile != "" {
		if _, err := readCerts(t.CAFile); err != nil {
			d.errorf(caN, join(path, "ca"), "%v", err)
		}
	}
	var certs []*x509.Certificate
	if t.CertFile != "" {
		var err error
		if certs, err = readCerts(t.CertFile); err != nil {
			d.errorf(certN, join(path, "cert"), "%v", err)
		}
	}
	if t.KeyFile != "" {
		key, err := readKey(t.KeyFile)
		switch {
		case err != nil:
			d.errorf(keyN, join(path, "key"), "%v", err)
		case certs != nil && !keyMatches(certs[0], key):
			d.errorf(keyN, join(path, "key"), "%s is not the private key of the certificate in %s", t.KeyFile, t.CertFile)
		}
	}
}
