package daemon

import (
	"crypto/x509"
	"fmt"
	"net/netip"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/wire"
)

// conns turns the configuration's connections into the engine's policy.
// The config package has already validated everything; what can still fail
// here is only what depends on the running system (an address that is not
// local, say).
func conns(cfg *config.Config) ([]*ike.Conn, error) {
	out := make([]*ike.Conn, 0, len(cfg.Connections))
	for _, c := range cfg.Connections {
		conn, err := conn(c)
		if err != nil {
			return nil, fmt.Errorf("connection %q: %w", c.Name, err)
		}
		out = append(out, conn)
	}
	return out, nil
}

func conn(c *config.Connection) (*ike.Conn, error) {
	ic := &ike.Conn{
		Name:          c.Name,
		RemoteAddrs:   c.Remote.Addrs,
		IKEProposals:  proposals(c.IKE.Proposals),
		DPDDelay:      c.DPD.Delay,
		NATKeepalive:  c.NATKeepalive,
		RekeyTime:     c.IKE.RekeyTime,
		Lifetime:      c.IKE.Lifetime,
		Fragmentation: c.Fragmentation,
		MIDSync:       c.RFC6311.MessageIDSync,
		ReplaySync:    c.RFC6311.ReplayCounterSync,
		SyncMargin:    c.RFC6311.Margin,
		SyncJump:      c.RFC6311.OutboundJump,
	}
	for _, a := range c.Local.Addrs {
		ic.LocalAddrs = append(ic.LocalAddrs, netip.PrefixFrom(a, a.BitLen()))
	}
	if !c.Remote.ID.Any() {
		ic.RemoteID = c.Remote.ID
		if !c.Remote.ID.IsPattern() {
			ic.RemoteIDHint = wire.ID{Type: c.Remote.ID.Type, Data: c.Remote.ID.Data}
		}
	}
	ic.LocalID = wire.ID{Type: c.Local.ID.Type, Data: c.Local.ID.Data}
	switch c.Local.Auth {
	case config.AuthPSK:
		ic.LocalAuth = ike.Auth{Method: ike.AuthPSK, PSK: c.PSK.Bytes()}
	case config.AuthPubkey:
		ic.LocalAuth = ike.Auth{Method: ike.AuthPubKey, Cert: c.Local.Cert, Chain: c.Local.Chain, Key: c.Local.Key.Signer()}
		if ic.LocalID.Type == 0 && c.Local.Cert != nil {
			ic.LocalID = wire.ID{Type: wire.ID_DER_ASN1_DN, Data: c.Local.Cert.RawSubject}
		}
	}
	switch c.Remote.Auth {
	case config.AuthPSK:
		ic.RemoteAuth = ike.Auth{Method: ike.AuthPSK, PSK: c.PSK.Bytes()}
	case config.AuthPubkey:
		pool := x509.NewCertPool()
		for _, ca := range c.Remote.CAs {
			pool.AddCert(ca)
		}
		ic.RemoteAuth = ike.Auth{Method: ike.AuthPubKey, CAs: pool, CACerts: c.Remote.CAs}
	}
	if len(c.Pools) > 0 {
		// The engine hands out from one range; the first is the one
		// operators configure for a connection in practice.
		p := c.Pools[0]
		if len(p.Ranges) > 0 {
			ic.Pool = ike.NewPool(p.Name, p.Ranges[0].From, p.Ranges[0].To)
		}
	}
	for _, ch := range c.Children {
		cc := &ike.ChildConfig{
			Name:         ch.Name,
			ESPProposals: proposals(ch.ESP),
			RekeyTime:    ch.Rekey.Time,
			Lifetime:     ch.Life.Time,
			LifeBytes:    ch.Life.Bytes,
			LifePackets:  ch.Life.Packets,
		}
		cc.LocalTS, cc.LocalDynamic = selectors(ch.LocalTS)
		cc.RemoteTS, cc.RemoteDynamic = selectors(ch.RemoteTS)
		ic.Children = append(ic.Children, cc)
	}
	return ic, nil
}

func proposals(ps []config.Proposal) []wire.Proposal {
	out := make([]wire.Proposal, len(ps))
	for i, p := range ps {
		out[i] = p.Wire(uint8(i + 1))
	}
	return out
}

// selectors converts configured selectors; dynamic reports that the list
// is (or contains only) "dynamic".
func selectors(ts []config.TrafficSelector) ([]ike.TrafficSelector, bool) {
	var out []ike.TrafficSelector
	dynamic := len(ts) == 0
	for _, t := range ts {
		if t.Dynamic {
			dynamic = true
			continue
		}
		out = append(out, ike.TrafficSelector{Type: t.Type(), Start: t.From, End: t.To,
			Protocol: t.Proto, StartPort: t.PortFrom, EndPort: t.PortTo})
	}
	return out, dynamic && len(out) == 0
}
