package transport

import (
	"fmt"
	"net/netip"
	"testing"
)

// Datagram sizes: an IKE informational exchange (DPD) and a full-MTU ESP
// packet.
var benchSizes = []int{100, 1400}

func benchDatagrams(to netip.AddrPort, size int) []Datagram {
	ds := make([]Datagram, DefaultBatchSize)
	msg := make([]byte, size)
	copy(msg, ikeHeader)
	for i := range ds {
		ds[i] = Datagram{Kind: KindIKE, Local: lo4, Remote: to, Data: msg}
	}
	return ds
}

// BenchmarkReceive measures the receive path alone: with the timer stopped
// a burst of datagrams is queued at the socket, then the receive loop drains
// it. (Sending and receiving at once would measure the sender, which is the
// slower half on loopback.)
func BenchmarkReceive(b *testing.B) {
	const burst = 1000 // fits the receive buffer at both sizes
	for _, size := range benchSizes {
		for _, batch := range []int{1, DefaultBatchSize} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				srv, err := Listen(ListenConfig{Addr: netip.AddrPortFrom(any4, 0), BatchSize: batch, ReadBuffer: 8 << 20})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				cli, err := Listen(ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
				if err != nil {
					b.Fatal(err)
				}
				defer cli.Close()
				ds := benchDatagrams(netip.AddrPortFrom(lo4, srv.LocalAddr().Port()), size)
				rx := newRxState(srv)
				defer rx.release()
				h := &nopHandler{}
				b.ReportAllocs()
				b.ResetTimer()
				for h.n < b.N {
					b.StopTimer()
					want := h.n + min(burst, b.N-h.n)
					for queued := h.n; queued < want; {
						n, err := cli.Send(ds[:min(len(ds), want-queued)])
						if err != nil {
							b.Fatal(err)
						}
						queued += n
					}
					b.StartTimer()
					for h.n < want {
						if err := rx.readBatch(h); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				st := srv.Stats()
				if st.RxDatagrams != uint64(h.n) {
					b.Fatalf("received %d datagrams, delivered %d", st.RxDatagrams, h.n)
				}
				b.ReportMetric(float64(h.n)/b.Elapsed().Seconds(), "pkts/s")
				b.ReportMetric(float64(st.RxDatagrams)/float64(st.RxBatches), "pkts/syscall")
			})
		}
	}
}

// BenchmarkSend measures sending to a socket nobody reads: on loopback the
// sender's system call also carries the datagram to the receiving socket's
// queue, or drops it there once the queue is full.
func BenchmarkSend(b *testing.B) {
	for _, size := range benchSizes {
		for _, batch := range []int{1, DefaultBatchSize} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				sink, err := Listen(ListenConfig{Addr: netip.AddrPortFrom(lo4, 0)})
				if err != nil {
					b.Fatal(err)
				}
				defer sink.Close()
				cli, err := Listen(ListenConfig{Addr: netip.AddrPortFrom(any4, 0), BatchSize: batch})
				if err != nil {
					b.Fatal(err)
				}
				defer cli.Close()
				ds := benchDatagrams(sink.LocalAddr(), size)
				b.ReportAllocs()
				b.ResetTimer()
				for sent := 0; sent < b.N; {
					chunk := ds[:min(len(ds), b.N-sent)]
					n, err := cli.Send(chunk)
					if err != nil {
						b.Fatal(err)
					}
					sent += n
				}
				b.StopTimer()
				st := cli.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
				b.ReportMetric(float64(st.TxDatagrams)/float64(st.TxBatches), "pkts/syscall")
			})
		}
	}
}
