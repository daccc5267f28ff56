package transport

import (
	"sync"
	"sync/atomic"
)

// BufferSize is the size of every receive buffer, and so the largest datagram
// accepted; a larger one is dropped (DropTruncated) rather than delivered cut
// short. It holds an ESP packet from a 9000-octet jumbo-frame path and an
// unfragmented IKE message with a certificate chain: strongSwan refuses IKE
// messages above 10,000 octets by default (charon.max_packet), and peers with
// bigger messages use IKE fragmentation (RFC 7383). Buffers of the full
// 64 KiB would pin four times the memory per receive slot and per packet a
// handler retains.
const BufferSize = 16384

// Buffer is a pooled receive buffer. A handler that keeps a Packet past its
// callback owns the Buffer returned by Packet.Retain and must Release it
// exactly once.
type Buffer struct {
	b   [BufferSize]byte
	lim *retainLimit // set while a handler holds the buffer
}

var bufferPool = sync.Pool{New: func() any { return new(Buffer) }}

func getBuffer() *Buffer { return bufferPool.Get().(*Buffer) }

// Release returns the buffer to the pool. Any slice of it, such as the Data
// of the Packet it was retained from, must not be used afterwards.
func (b *Buffer) Release() {
	if b == nil {
		return
	}
	if l := b.lim; l != nil {
		b.lim = nil
		<-l.held
	}
	bufferPool.Put(b)
}

// DefaultMaxRetained is the number of buffers handlers may hold at once per
// socket when ListenConfig.MaxRetained is zero: 16 MiB of packets queued
// for workers.
const DefaultMaxRetained = 1024

// retainLimit bounds the buffers handlers hold, so that a storm of queued
// packets costs bounded memory: once the limit is reached, Retain waits for
// a Release, the receive loop stops reading, and the kernel queues and then
// drops (DropKernel) instead of the heap growing.
type retainLimit struct {
	held   chan struct{} // one token per held buffer
	closed chan struct{} // closed with the socket: stop waiting
	waits  *atomic.Uint64
}

// acquire takes a token for b, waiting if all are held. After the socket is
// closed it lets b go unaccounted rather than block a shutting-down loop.
func (l *retainLimit) acquire(b *Buffer) {
	select {
	case l.held <- struct{}{}:
		b.lim = l
		return
	default:
	}
	l.waits.Add(1)
	select {
	case l.held <- struct{}{}:
		b.lim = l
	case <-l.closed:
	}
}
