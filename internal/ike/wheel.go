package ike

import (
	"sync"
	"time"
)

// wheel is a hashed timing wheel. Every IKE SA has exactly one pending
// deadline at a time (the earliest of its retransmission, DPD, rekey and
// expiry times), kept in an intrusive list node embedded in the SA. With
// 100,000 SAs this costs a few pointers each and one goroutine per wheel,
// where a runtime timer per SA would cost an allocation and a goroutine on
// every firing.
type wheel struct {
	mu    sync.Mutex
	tick  time.Duration
	now   int64 // current tick number
	slots []timerNode
	fire  func(*SA)
	stop  chan struct{}
	done  chan struct{}
}

// timerNode is embedded in an SA. A node is linked into at most one slot.
type timerNode struct {
	prev, next *timerNode
	sa         *SA
	at         int64 // absolute tick at which it fires
	linked     bool
}

func newWheel(tick time.Duration, nslots int, fire func(*SA)) *wheel {
	w := &wheel{tick: tick, slots: make([]timerNode, nslots), fire: fire,
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range w.slots {
		w.slots[i].prev, w.slots[i].next = &w.slots[i], &w.slots[i]
	}
	return w
}

// schedule arms sa's timer to fire after d (rounded up to a tick), replacing
// any pending deadline.
func (w *wheel) schedule(sa *SA, d time.Duration) {
	n := &sa.timer
	ticks := int64((d + w.tick - 1) / w.tick)
	if ticks < 1 {
		ticks = 1
	}
	w.mu.Lock()
	// advance reads n.sa under w.mu, for nodes of any slot.
	n.sa = sa
	w.unlink(n)
	n.at = w.now + ticks
	head := &w.slots[n.at%int64(len(w.slots))]
	n.prev, n.next = head.prev, head
	head.prev.next = n
	head.prev = n
	n.linked = true
	w.mu.Unlock()
}

// cancel disarms sa's timer.
func (w *wheel) cancel(sa *SA) {
	w.mu.Lock()
	w.unlink(&sa.timer)
	w.mu.Unlock()
}

func (w *wheel) unlink(n *timerNode) {
	if !n.linked {
		return
	}
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next, n.linked = nil, nil, false
}

// advance moves the wheel one tick and fires what is due. Firing happens
// outside the lock so that fire may reschedule.
func (w *wheel) advance(due []*SA) []*SA {
	w.mu.Lock()
	w.now++
	head := &w.slots[w.now%int64(len(w.slots))]
	for n := head.next; n != head; {
		next := n.next
		if n.at <= w.now {
			w.unlink(n)
			due = append(due, n.sa)
		}
		n = next
	}
	w.mu.Unlock()
	for _, sa := range due {
		w.fire(sa)
	}
	return due[:0]
}

func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	start := time.Now()
	var ticks int64
	var due []*SA
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			// A ticker drops ticks while the process stalls; catch up so
			// that a stall delays timers by its length, not by a multiple.
			for target := int64(now.Sub(start) / w.tick); ticks < target; ticks++ {
				due = w.advance(due)
			}
		}
	}
}

func (w *wheel) close() {
	close(w.stop)
	<-w.done
}
