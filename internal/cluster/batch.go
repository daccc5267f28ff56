package cluster

import (
	"context"
	"errors"
	"sync"
	"time"
)

// batcher coalesces SA operations from concurrent callers into few raft
// entries. The first call waits BatchWindow for company; calls that arrive
// while a batch is being committed form the next batch, which goes as soon
// as the first is done. So under load entries grow instead of multiplying,
// and at most one SA entry per node is in flight, which keeps a node's
// operations in the order they were made.
type batcher struct {
	n        *Node
	mu       sync.Mutex
	queue    []*pendingOps
	size     int
	inflight bool
	timer    *time.Timer
}

type pendingOps struct {
	ops  []saOp
	size int
	done chan error
}

// opSize bounds an op's encoded size (for a delete or Message IDs too).
func opSize(op *saOp) int { return 1 + 16 + 17 + 10 + len(op.blob) }

// submit queues ops and waits for their commit. A call larger than
// maxEntry is cut into several entries; they commit in order, but not
// atomically: after an error some of them may be applied.
func (b *batcher) submit(ctx context.Context, ops []saOp) error {
	var parts []*pendingOps
	p := &pendingOps{done: make(chan error, 1)}
	for i := range ops {
		sz := opSize(&ops[i])
		if len(p.ops) > 0 && p.size+sz > maxEntry {
			parts = append(parts, p)
			p = &pendingOps{done: make(chan error, 1)}
		}
		p.ops = append(p.ops, ops[i])
		p.size += sz
	}
	parts = append(parts, p)
	b.mu.Lock()
	for _, p := range parts {
		b.queue = append(b.queue, p)
		b.size += p.size
	}
	switch {
	case b.inflight:
	case b.size >= maxEntry:
		if b.timer != nil {
			b.timer.Stop()
			b.timer = nil
		}
		b.inflight = true
		go b.run()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.n.opts.BatchWindow, b.fire)
	}
	b.mu.Unlock()
	var errs []error
	for _, p := range parts {
		select {
		case err := <-p.done:
			errs = append(errs, err)
		case <-ctx.Done():
			// The operations may still be committed; the caller records again.
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

func (b *batcher) fire() {
	b.mu.Lock()
	b.timer = nil
	if b.inflight {
		b.mu.Unlock()
		return
	}
	b.inflight = true
	b.mu.Unlock()
	b.run()
}

// run commits queued batches until the queue is empty.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inflight = false
			b.mu.Unlock()
			return
		}
		// Take whole calls up to maxEntry (at least one).
		take, size := 0, 0
		for take < len(b.queue) && (take == 0 || size+b.queue[take].size <= maxEntry) {
			size += b.queue[take].size
			take++
		}
		batch := b.queue[:take:take]
		b.queue = b.queue[take:]
		b.size -= size
		b.mu.Unlock()

		cmd := make([]byte, 0, size+64)
		cmd = appendSAHeader(cmd, b.n.opts.Cluster.NodeID)
		for _, p := range batch {
			for i := range p.ops {
				cmd = appendOp(cmd, &p.ops[i])
			}
		}
		err := b.n.apply(context.Background(), cmd)
		for _, p := range batch {
			p.done <- err
		}
	}
}
