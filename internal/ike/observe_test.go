package ike

import (
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

// TestOnExchange: the hook sees each exchange we initiate, once, with a
// round trip that covers a retransmission, and tells DPD from other
// INFORMATIONAL exchanges; the responder's hook sees nothing.
func TestOnExchange(t *testing.T) {
	client, server := testConns("a long enough pre-shared key")
	client.DPDDelay = 100 * time.Millisecond
	p := newPair(t, client, server)
	var mu sync.Mutex
	var got []ExchangeDone
	var responderCalls int
	// Set before the first Initiate: the worker reads it only after the
	// Initiate below has handed it work, which orders the two.
	p.a.cfg.OnExchange = func(x ExchangeDone) { mu.Lock(); got = append(got, x); mu.Unlock() }
	p.b.cfg.OnExchange = func(ExchangeDone) { mu.Lock(); responderCalls++; mu.Unlock() }
	// Drop the first DPD request once, so its round trip includes the
	// 200 ms retransmission timeout.
	dropped := false
	p.mu.Lock()
	p.drop = func(from string, msg []byte) bool {
		h, err := wire.ParseHeader(msg)
		if err != nil || from != "a" || h.Exchange != wire.INFORMATIONAL || h.IsResponse() || dropped {
			return false
		}
		dropped = true
		return true
	}
	p.mu.Unlock()
	p.establish()
	waitFor(t, "two DPD exchanges", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, x := range got {
			if x.DPD {
				n++
			}
		}
		return n >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 4 || got[0].Type != wire.IKE_SA_INIT || got[1].Type != wire.IKE_AUTH || got[0].DPD || got[1].DPD {
		t.Fatalf("first exchanges %+v, want IKE_SA_INIT and IKE_AUTH, not DPD", got)
	}
	for _, x := range got {
		if x.Failed || x.RTT <= 0 {
			t.Fatalf("exchange %+v: want a positive round trip and success", x)
		}
		if x.DPD && x.Type != wire.INFORMATIONAL {
			t.Fatalf("DPD reported as %v", x.Type)
		}
	}
	if first := got[2]; !first.DPD || first.RTT < 200*time.Millisecond {
		t.Fatalf("first DPD %+v: want its round trip to include the retransmission timeout", first)
	}
	if got[3].RTT >= 200*time.Millisecond {
		t.Fatalf("second DPD took %v without loss", got[3].RTT)
	}
	if responderCalls != 0 {
		t.Fatalf("responder's hook called %d times", responderCalls)
	}
}
