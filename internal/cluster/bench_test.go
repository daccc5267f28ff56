package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/ike"
)

// BenchmarkApplyRecords measures replicated SA records per second through
// a 3-node cluster on loopback (TLS, raft-wal with fsync), with W writers
// each applying one ~1 KiB record per call, on the leader or forwarded from
// a follower. entries/op shows how far batching coalesced the calls.
func BenchmarkApplyRecords(b *testing.B) {
	js, _ := json.Marshal(testRecord(1, vip1))
	b.Logf("record: %d bytes as JSON", len(js))
	for _, where := range []string{"leader", "follower"} {
		for _, bw := range []time.Duration{DefaultBatchWindow, time.Millisecond} {
			for _, w := range []int{1, 16, 256} {
				benchApply(b, where, bw, w)
			}
		}
	}
}

func benchApply(b *testing.B, where string, window time.Duration, w int) {
	b.Run(fmt.Sprintf("%s/window=%v/writers=%d", where, window, w), func(b *testing.B) {
		tc := newTestCluster(b, 3)
		for i := range tc.opts {
			tc.opts[i].BatchWindow = window
		}
		tc.startAll()
		li := tc.leader()
		nd := tc.nodes[li]
		if where == "follower" {
			nd = tc.nodes[(li+1)%3]
		}
		recs := make([]ike.Record, w)
		for i := range recs {
			recs[i] = testRecord(uint64(i+1), offVIP)
		}
		before := tc.nodes[li].raft.Stats()["last_log_index"]
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for i := range w {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					if err := nd.ApplyRecords(context.Background(), recs[i:i+1]); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		after := tc.nodes[li].raft.Stats()["last_log_index"]
		x, _ := strconv.Atoi(before)
		y, _ := strconv.Atoi(after)
		b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
		b.ReportMetric(float64(y-x)/float64(b.N), "entries/op")
	})
}

// BenchmarkApplyBulk: one call with many records, as a daemon that
// replicates its changed records once per interval makes it.
func BenchmarkApplyBulk(b *testing.B) {
	for _, size := range []int{100, 1000, 3000} {
		b.Run(fmt.Sprintf("records=%d", size), func(b *testing.B) {
			tc := newTestCluster(b, 3)
			tc.startAll()
			nd := tc.nodes[(tc.leader()+1)%3]
			recs := make([]ike.Record, size)
			for i := range recs {
				recs[i] = testRecord(uint64(i+1), offVIP)
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := nd.ApplyRecords(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkFailover closes the leader of a 3-node cluster with the default
// timeouts (heartbeat 500ms, election 1s, FailAfter 1s) and reports how long
// the survivors took to elect a leader and to see the dead node's VIP
// moved. Run with -benchtime=Nx.
func BenchmarkFailover(b *testing.B) {
	var elect, move time.Duration
	for range b.N {
		tc := newTestCluster(b, 3)
		for i := range tc.opts {
			tc.opts[i].Cluster.HeartbeatTimeout = config.DefaultHeartbeatTimeout
			tc.opts[i].Cluster.ElectionTimeout = config.DefaultElectionTimeout
		}
		tc.startAll()
		li := tc.leader()
		vip, vid := tc.peers[li].VIPs[0].Addr(), tc.peers[li].ID
		s := tc.nodes[(li+1)%3]
		waitFor(b, 5*time.Second, "VIPs claimed", func() bool { return len(s.VIPs()) == 3 })
		killed := time.Now()
		tc.nodes[li].Close()
		waitFor(b, 10*time.Second, "new leader", func() bool { l := s.Leader(); return l != "" && l != vid })
		elect += time.Since(killed)
		waitFor(b, 10*time.Second, "VIP moved", func() bool { o := s.VIPs()[vip]; return o != "" && o != vid })
		move += time.Since(killed)
		for _, nd := range tc.nodes {
			nd.Close()
		}
	}
	b.ReportMetric(float64(elect.Milliseconds())/float64(b.N), "ms-to-leader")
	b.ReportMetric(float64(move.Milliseconds())/float64(b.N), "ms-to-VIP-moved")
}
