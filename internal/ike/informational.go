package ike

import (
	"errors"

	"github.com/hike-vpn/hike/internal/wire"
)

// INFORMATIONAL exchanges (RFC 7296 §1.4): liveness checks, deletes, and
// the notifies that travel alone. RFC 6311 sync requests use this exchange
// type too but run outside the Message ID sequence; see midsync.go.

// respondInformational answers an INFORMATIONAL request.
func (e *Engine) respondInformational(sa *SA, in *inbound, w *wire.Builder) (postAction, error) {
	post := postNone
	var spis []uint32
	for _, p := range in.payloads {
		if p.Type != wire.PayloadDelete {
			continue
		}
		d, err := wire.ParseDelete(p.Body)
		if err != nil {
			return postNone, err
		}
		switch d.Protocol {
		case wire.ProtoIKE:
			// Deleting the IKE SA deletes its Child SAs with it; the
			// response is empty (RFC 7296 §1.4.1).
			e.log.Info("peer deletes IKE SA", "sa", sa.logID(), "remote", sa.remote)
			sa.state = StateDeleting
			return postDeleteSA, nil
		case wire.ProtoESP, wire.ProtoAH:
			for i := 0; i < int(d.Count); i++ {
				spi := d.SPI(i)
				c := sa.childByOutSPI(spi)
				if c == nil {
					continue // already gone: answer without it (§1.4.1)
				}
				// A delete that crosses our own for the same SA is answered
				// without a Delete payload (RFC 7296 §2.25).
				if c.state != childDeleting {
					spis = append(spis, c.spiIn)
				}
				e.log.Info("peer deletes Child SA", "sa", sa.logID(), "child", c.cfgName(), "spi_in", hex32(c.spiIn), "spi_out", hex32(spi))
				e.deleteChild(sa, c)
			}
		}
	}
	if len(spis) > 0 {
		w.AddDeleteChild(wire.ProtoESP, spis...)
	}
	return post, nil
}

// dpdExchange is an empty INFORMATIONAL request: the liveness check of
// RFC 7296 §2.4.
type dpdExchange struct{}

func (*dpdExchange) kind() wire.ExchangeType                 { return wire.INFORMATIONAL }
func (*dpdExchange) build(*Engine, *SA, *wire.Builder) error { return nil }
func (*dpdExchange) process(e *Engine, sa *SA, in *inbound) error {
	sa.stats.DPDAnswered++
	return nil
}

// deleteExchange deletes the IKE SA (children nil) or some Child SAs.
type deleteExchange struct {
	children []*ChildSA
	done     func(error)
}

func (*deleteExchange) kind() wire.ExchangeType { return wire.INFORMATIONAL }

func (x *deleteExchange) build(e *Engine, sa *SA, w *wire.Builder) error {
	if x.children == nil {
		sa.state = StateDeleting
		w.AddDeleteIKE()
		return nil
	}
	spis := make([]uint32, 0, len(x.children))
	for _, c := range x.children {
		c.state = childDeleting
		spis = append(spis, c.spiIn)
	}
	w.AddDeleteChild(wire.ProtoESP, spis...)
	return nil
}

func (x *deleteExchange) process(e *Engine, sa *SA, in *inbound) error {
	if x.children == nil {
		e.remove(sa, "deleted locally")
	} else {
		for _, c := range x.children {
			e.deleteChild(sa, c)
		}
	}
	if x.done != nil {
		x.done(nil)
	}
	return nil
}

func (x *deleteExchange) abandon(err error) {
	if x.done != nil {
		x.done(err)
	}
}

var errNoSuchChild = errors.New("no such Child SA")
