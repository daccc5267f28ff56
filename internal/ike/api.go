package ike

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
)

// The engine's operator surface: what `hike sa list|show|initiate|terminate`
// and the metrics read or trigger through the control socket.

// SAInfo describes an IKE SA for operators. It never carries key material.
type SAInfo struct {
	ID          string      `json:"id"`
	Conn        string      `json:"conn"`
	State       string      `json:"state"`
	Initiator   bool        `json:"initiator"`
	SPIi        string      `json:"spi_i"`
	SPIr        string      `json:"spi_r"`
	Local       string      `json:"local"`
	Remote      string      `json:"remote"`
	PeerID      string      `json:"peer_id,omitempty"`
	VirtualIP   string      `json:"virtual_ip,omitempty"`
	Suite       string      `json:"suite"`
	Established time.Time   `json:"established,omitzero"`
	NextSendMID uint32      `json:"next_send_mid"`
	NextRecvMID uint32      `json:"next_recv_mid"`
	Extensions  Extensions  `json:"extensions"`
	Stats       SAStats     `json:"stats"`
	Children    []ChildInfo `json:"children"`
}

// ChildInfo describes a Child SA.
type ChildInfo struct {
	Name     string   `json:"name"`
	SPIIn    string   `json:"spi_in"`
	SPIOut   string   `json:"spi_out"`
	State    string   `json:"state"`
	Encr     uint16   `json:"encr"`
	EncrBits uint16   `json:"encr_bits,omitempty"`
	Integ    uint16   `json:"integ,omitempty"`
	ESN      bool     `json:"esn"`
	LocalTS  []string `json:"local_ts"`
	RemoteTS []string `json:"remote_ts"`
	// Traffic as the data plane counts it; only Show reads it, since it
	// costs the kernel data plane a netlink round trip per SA.
	Traffic *ChildTraffic `json:"traffic,omitempty"`
}

// ChildTraffic is what went through a Child SA.
type ChildTraffic struct {
	InBytes    uint64 `json:"in_bytes"`
	InPackets  uint64 `json:"in_packets"`
	OutBytes   uint64 `json:"out_bytes"`
	OutPackets uint64 `json:"out_packets"`
}

func (sa *SA) info() SAInfo {
	i := SAInfo{
		ID: sa.logID(), State: sa.state.String(), Initiator: sa.initiator,
		SPIi: fmt.Sprintf("%016x", sa.spiI), SPIr: fmt.Sprintf("%016x", sa.spiR),
		Local: sa.local.String(), Remote: sa.remote.String(),
		Established: sa.established, NextSendMID: sa.nextSend, NextRecvMID: sa.nextRecv,
		Extensions: sa.ext, Stats: sa.stats,
	}
	if sa.conn != nil {
		i.Conn = sa.conn.Name
	}
	if sa.peerID.Type != 0 {
		i.PeerID = idString(sa.peerID)
	}
	if sa.vip.IsValid() {
		i.VirtualIP = sa.vip.String()
	}
	if s := sa.suite; s.Encr != nil {
		i.Suite = fmt.Sprintf("encr=%d/%d prf=%d", s.Encr.ID, s.Encr.KeyBits, s.PRF.ID)
		if s.Integ != nil {
			i.Suite += fmt.Sprintf(" integ=%d", s.Integ.ID)
		}
		i.Suite += fmt.Sprintf(" dh=%d", s.DH)
	}
	for _, c := range sa.children {
		ci := ChildInfo{Name: c.cfgName(), SPIIn: hex32(c.spiIn), SPIOut: hex32(c.spiOut),
			Encr: c.encr, EncrBits: c.encrBits, Integ: c.integ, ESN: c.esn}
		switch c.state {
		case childInstalled:
			ci.State = "installed"
		case childRekeying:
			ci.State = "rekeying"
		case childDeleting:
			ci.State = "deleting"
		}
		for _, t := range c.localTS {
			ci.LocalTS = append(ci.LocalTS, tsString([]TrafficSelector{t}))
		}
		for _, t := range c.remoteTS {
			ci.RemoteTS = append(ci.RemoteTS, tsString([]TrafficSelector{t}))
		}
		i.Children = append(i.Children, ci)
	}
	return i
}

// List returns every IKE SA, sorted by ID.
func (e *Engine) List() []SAInfo {
	var sas []*SA
	e.table.Range(func(sa *SA) bool { sas = append(sas, sa); return true })
	out := make([]SAInfo, 0, len(sas))
	for _, sa := range sas {
		sa.mu.Lock()
		if sa.state != StateDead {
			out = append(out, sa.info())
		}
		sa.mu.Unlock()
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// ErrNoSuchSA is returned for an SA ID that names no IKE SA.
var ErrNoSuchSA = errors.New("no such IKE SA")

// find resolves an operator's SA reference: the ID List shows, or either
// SPI in hex.
func (e *Engine) find(ref string) *SA {
	var found *SA
	e.table.Range(func(sa *SA) bool {
		if sa.logID() == ref || fmt.Sprintf("%016x", sa.spiI) == ref || fmt.Sprintf("%016x", sa.spiR) == ref ||
			fmt.Sprintf("%x", sa.spiI) == ref || fmt.Sprintf("%x", sa.spiR) == ref {
			found = sa
			return false
		}
		return true
	})
	return found
}

// Show returns one IKE SA.
func (e *Engine) Show(ref string) (SAInfo, error) {
	sa := e.find(ref)
	if sa == nil {
		return SAInfo{}, ErrNoSuchSA
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	info := sa.info()
	if dp := e.cfg.Dataplane; dp != nil {
		for i, c := range sa.children {
			if !c.installed {
				continue
			}
			in, err1 := dp.Counters(dataplane.SAID{SPI: c.spiIn, Src: addrOf(sa.remote), Dst: addrOf(sa.local)})
			out, err2 := dp.Counters(dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)})
			if err1 == nil && err2 == nil {
				info.Children[i].Traffic = &ChildTraffic{InBytes: in.Bytes, InPackets: in.Packets,
					OutBytes: out.Bytes, OutPackets: out.Packets}
			}
		}
	}
	return info, nil
}

// Initiate starts an IKE SA for the named connection towards its first
// remote address. done, if not nil, is called once with the outcome.
func (e *Engine) Initiate(connName string, local netip.AddrPort, done func(SAInfo, error)) error {
	conn := e.conns[connName]
	if conn == nil {
		return fmt.Errorf("no connection %q", connName)
	}
	if len(conn.RemoteAddrs) == 0 || !conn.RemoteAddrs[0].IsSingleIP() {
		return fmt.Errorf("connection %q has no single remote address to initiate to", connName)
	}
	port := conn.RemotePort
	if port == 0 {
		port = 500
	}
	sa := &SA{initiator: true, conn: conn, local: local, state: StateInit, created: e.now(),
		remote: netip.AddrPortFrom(conn.RemoteAddrs[0].Addr(), port), hs: &handshake{}, onUp: done}
	e.table.Insert(sa)
	e.halfOpen.Add(1)
	e.submit(sa, func() { e.enqueue(sa, &initExchange{}) })
	return nil
}

// Terminate deletes an IKE SA with a Delete payload; done, if not nil, is
// called when the peer confirmed or the SA was given up.
func (e *Engine) Terminate(ref string, done func(error)) error {
	sa := e.find(ref)
	if sa == nil {
		return ErrNoSuchSA
	}
	e.submit(sa, func() {
		if sa.state != StateEstablished {
			e.remove(sa, "terminated before establishment")
			if done != nil {
				done(nil)
			}
			return
		}
		e.enqueue(sa, &deleteExchange{done: done})
	})
	return nil
}
