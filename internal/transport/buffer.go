package transport

import "sync"

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
