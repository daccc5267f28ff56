package ike

import (
	"testing"
	"time"
)

// TestChildRekey: the initiator rekeys its Child SA; both sides end with one
// Child SA whose SPIs are new, and the old pair is gone (RFC 7296 §2.8).
func TestChildRekey(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	old := p.establish().Children[0]
	a := onlySA(t, p.a)
	a.mu.Lock()
	p.a.enqueue(a, &childRekeyExchange{old: a.children[0]})
	a.mu.Unlock()
	waitFor(t, "rekey and delete", func() bool {
		la, lb := p.a.List(), p.b.List()
		return len(la) == 1 && len(lb) == 1 && len(la[0].Children) == 1 && len(lb[0].Children) == 1 &&
			la[0].Children[0].SPIIn != old.SPIIn && lb[0].Children[0].SPIOut == la[0].Children[0].SPIIn &&
			lb[0].Children[0].SPIIn == la[0].Children[0].SPIOut
	})
}

// TestIKERekey: the responder rekeys the IKE SA; the new SA has new SPIs
// on both sides, carries the Child SA and the RFC 6311 capabilities, and
// the old SA is deleted (RFC 7296 §2.18).
func TestIKERekey(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	p := newPair(t, client, server)
	before := p.establish()
	b := onlySA(t, p.b)
	b.mu.Lock()
	p.b.enqueue(b, &ikeRekeyExchange{})
	b.mu.Unlock()
	waitFor(t, "the old IKE SA to go", func() bool {
		la, lb := p.a.List(), p.b.List()
		return len(la) == 1 && len(lb) == 1 && la[0].SPIi != before.SPIi && la[0].SPIi == lb[0].SPIi && la[0].SPIr == lb[0].SPIr
	})
	after := p.a.List()[0]
	if len(after.Children) != 1 || after.Children[0].SPIIn != before.Children[0].SPIIn {
		t.Fatalf("Child SA not carried over: %+v", after.Children)
	}
	if !after.Extensions.MIDSync || !after.Extensions.ReplaySync || after.NextSendMID != 0 && after.Initiator {
		t.Fatalf("rekeyed SA: %+v", after)
	}
	// The new SA works: DPD from both sides.
	a, nb := onlySA(t, p.a), onlySA(t, p.b)
	a.mu.Lock()
	p.a.enqueue(a, &dpdExchange{})
	a.mu.Unlock()
	nb.mu.Lock()
	p.b.enqueue(nb, &dpdExchange{})
	nb.mu.Unlock()
	waitFor(t, "DPD on the new SA", func() bool {
		a.mu.Lock()
		nb.mu.Lock()
		defer a.mu.Unlock()
		defer nb.mu.Unlock()
		return a.stats.DPDAnswered == 1 && nb.stats.DPDAnswered == 1
	})
}

// TestSimultaneousChildRekey: both ends rekey the same Child SA at once.
// The nonces pick one survivor (RFC 7296 §2.8.1): in the end each side has
// exactly one Child SA, the two halves pair up, and the old one is gone.
func TestSimultaneousChildRekey(t *testing.T) {
	for i := 0; i < 5; i++ {
		client, server := testConns("a long enough pre-shared key")
		p := newPair(t, client, server)
		old := p.establish().Children[0]
		a, b := onlySA(t, p.a), onlySA(t, p.b)
		waitFor(t, "responder up", func() bool { return len(p.b.List()) == 1 && len(p.b.List()[0].Children) == 1 })
		a.mu.Lock()
		b.mu.Lock()
		// Queue both before either runs, so that the requests cross.
		a.queue = append(a.queue, &childRekeyExchange{old: a.children[0]})
		b.queue = append(b.queue, &childRekeyExchange{old: b.children[0]})
		b.mu.Unlock()
		a.mu.Unlock()
		p.a.async(a, func() { p.a.kick(a) })
		p.b.async(b, func() { p.b.kick(b) })
		waitFor(t, "one surviving Child SA on each side", func() bool {
			la, lb := p.a.List(), p.b.List()
			if len(la) != 1 || len(lb) != 1 || len(la[0].Children) != 1 || len(lb[0].Children) != 1 {
				return false
			}
			ca, cb := la[0].Children[0], lb[0].Children[0]
			return ca.SPIIn == cb.SPIOut && ca.SPIOut == cb.SPIIn && ca.SPIIn != old.SPIIn && ca.SPIIn != old.SPIOut
		})
	}
}

// TestSecondChild: a connection with two children gets the first with
// IKE_AUTH and the second through CREATE_CHILD_SA.
func TestSecondChild(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	second := *client.Children[0]
	second.Name = "second"
	client.Children = append(client.Children, &second)
	p := newPair(t, client, server)
	p.establish()
	waitFor(t, "two Child SAs on both sides", func() bool {
		la, lb := p.a.List(), p.b.List()
		return len(la) == 1 && len(lb) == 1 && len(la[0].Children) == 2 && len(lb[0].Children) == 2
	})
}

// TestSimultaneousIKERekey: both ends rekey the IKE SA at once. The nonces
// pick one new IKE SA (RFC 7296 §2.8.2): in the end each side has exactly
// one IKE SA, the same one, it carries the Child SA and it works.
func TestSimultaneousIKERekey(t *testing.T) {
	for i := 0; i < 5; i++ {
		client, server := testConns("a long enough pre-shared key")
		p := newPair(t, client, server)
		before := p.establish()
		waitFor(t, "responder up", func() bool { return len(p.b.List()) == 1 })
		a, b := onlySA(t, p.a), onlySA(t, p.b)
		a.mu.Lock()
		b.mu.Lock()
		a.queue = append(a.queue, &ikeRekeyExchange{})
		b.queue = append(b.queue, &ikeRekeyExchange{})
		b.mu.Unlock()
		a.mu.Unlock()
		p.a.async(a, func() { p.a.kick(a) })
		p.b.async(b, func() { p.b.kick(b) })
		deadline := time.Now().Add(5 * time.Second)
		for {
			la, lb := p.a.List(), p.b.List()
			if len(la) == 1 && len(lb) == 1 && la[0].SPIi == lb[0].SPIi && la[0].SPIr == lb[0].SPIr &&
				la[0].SPIi != before.SPIi && len(la[0].Children) == 1 && len(lb[0].Children) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no single surviving IKE SA:\na: %+v\nb: %+v", la, lb)
			}
			time.Sleep(10 * time.Millisecond)
		}
		na, nb := onlySA(t, p.a), onlySA(t, p.b)
		na.mu.Lock()
		p.a.enqueue(na, &dpdExchange{})
		na.mu.Unlock()
		nb.mu.Lock()
		p.b.enqueue(nb, &dpdExchange{})
		nb.mu.Unlock()
		waitFor(t, "DPD on the surviving SA", func() bool {
			na.mu.Lock()
			nb.mu.Lock()
			defer na.mu.Unlock()
			defer nb.mu.Unlock()
			return na.stats.DPDAnswered == 1 && nb.stats.DPDAnswered == 1
		})
	}
}
