package transport

import "sync"

// BufferSize is the size of every receive buffer. It holds the largest UDP
// payload IPv6 can carry without jumbograms (65,535 − 8): IKE_AUTH messages
// with certificate chains may legitimately arrive IP-fragmented and large,
// and a datagram that does not fit is dropped (DropTruncated) rather than
// delivered cut short.
const BufferSize = 65535 - 8

// Buffer is a pooled receive buffer. A handler that keeps a Packet past its
// callback owns the Buffer returned by Packet.Retain and must Release it
// exactly once.
type Buffer struct {
	b [BufferSize]byte
}

var bufferPool = sync.Pool{New: func() any { return new(Buffer) }}

func getBuffer() *Buffer { return bufferPool.Get().(*Buffer) }

// Release returns the buffer to the pool. Any slice of it, such as the Data
// of the Packet it was retained from, must not be used afterwards.
func (b *Buffer) Release() {
	if b != nil {
		bufferPool.Put(b)
	}
}
