package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/transport"
	"github.com/hike-vpn/hike/internal/wire"
)

// Metrics are read at scrape time from the counters the packet path keeps
// anyway (atomics in the engine, the sockets and the data plane), so that
// exporting them costs the packet path nothing.

// EngineSource is the part of the IKE engine the collector reads.
type EngineSource interface {
	Stats() *ike.Stats
	List() []ike.SAInfo
}

// SocketStats are one transport socket's counters under its local address.
type SocketStats struct {
	Addr  string
	Stats transport.Stats
}

// DataplaneStats are a data plane's backend-wide counters.
type DataplaneStats struct {
	TxPackets uint64 // ESP packets sent
	RxPackets uint64 // inner packets delivered after decryption
	// Drops counts dropped packets by reason (a short snake_case word).
	Drops map[string]uint64
}

// Sources are what the collector reads. Any of them may be nil.
type Sources struct {
	Engine    EngineSource
	Sockets   func() []SocketStats
	Dataplane func() (DataplaneStats, bool)
}

// states are exported even when no SA is in them, so that a dashboard sees
// a zero rather than a missing series.
var states = []string{"init", "auth", "established", "deleting"}

type desc struct {
	// IKE
	sas, children, rfc6311, exchanges            *prometheus.Desc
	retransmitsSent, retransmitsIn               *prometheus.Desc
	dpdSent, dpdTimeouts                         *prometheus.Desc
	syncsSent, syncsAnswered, syncsDropped       *prometheus.Desc
	syncsDone, syncsFailed                       *prometheus.Desc
	malformed, unknownSPI, integrity, queueDrops *prometheus.Desc
	cookies                                      *prometheus.Desc
	// transport
	rxDatagrams, rxBytes, rxBatches, rxIKE, rxESP *prometheus.Desc
	keepalives, sockDrops, rxErrors               *prometheus.Desc
	txDatagrams, txBytes, txBatches, txErrors     *prometheus.Desc
	fallbacks                                     *prometheus.Desc
	// data plane
	dpPackets, dpDrops *prometheus.Desc
}

type collector struct {
	src Sources
	d   desc
}

// NewCollector returns a Prometheus collector over src. Every metric is
// named hike_*.
func NewCollector(src Sources) prometheus.Collector {
	c := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("hike_"+name, help, labels, nil)
	}
	return &collector{src: src, d: desc{
		sas:             c("ike_sas", "IKE SAs by state.", "state"),
		children:        c("ike_child_sas", "Child SAs of all IKE SAs."),
		rfc6311:         c("ike_rfc6311_sas", "IKE SAs that negotiated an RFC 6311 synchronisation.", "sync"),
		exchanges:       c("ike_exchanges_total", "Completed IKE exchanges by type, our role and result.", "exchange", "role", "result"),
		retransmitsSent: c("ike_retransmits_sent_total", "Requests of ours sent again because no response came."),
		retransmitsIn:   c("ike_retransmits_received_total", "Retransmitted requests from peers answered from the response cache."),
		dpdSent:         c("ike_dpd_sent_total", "Dead peer detection requests sent."),
		dpdTimeouts:     c("ike_dpd_timeouts_total", "IKE SAs given up because the peer stopped answering."),
		syncsSent:       c("ike_syncs_sent_total", "RFC 6311 synchronisation requests sent (cluster role)."),
		syncsAnswered:   c("ike_syncs_answered_total", "RFC 6311 synchronisation requests answered (peer role)."),
		syncsDropped:    c("ike_syncs_dropped_total", "RFC 6311 synchronisation messages dropped by the RFC's rules."),
		syncsDone:       c("ike_syncs_completed_total", "RFC 6311 synchronisations completed (cluster role)."),
		syncsFailed:     c("ike_syncs_failed_total", "RFC 6311 synchronisations that failed or went unanswered (cluster role)."),
		malformed:       c("ike_malformed_total", "IKE messages that did not parse."),
		unknownSPI:      c("ike_unknown_spi_total", "IKE messages for no known IKE SA."),
		integrity:       c("ike_integrity_failures_total", "IKE messages whose integrity check failed."),
		queueDrops:      c("ike_queue_drops_total", "IKE messages dropped because a worker queue was full."),
		cookies:         c("ike_cookies_sent_total", "COOKIE notifies sent to initiators under load."),

		rxDatagrams: c("transport_received_datagrams_total", "Datagrams read from a socket.", "socket"),
		rxBytes:     c("transport_received_bytes_total", "UDP payload octets read from a socket.", "socket"),
		rxBatches:   c("transport_receive_batches_total", "Receive system calls that returned datagrams.", "socket"),
		rxIKE:       c("transport_ike_messages_total", "IKE messages delivered to the engine.", "socket"),
		rxESP:       c("transport_esp_packets_total", "ESP-in-UDP packets delivered to the data plane.", "socket"),
		keepalives:  c("transport_keepalives_total", "NAT keepalives received.", "socket"),
		sockDrops:   c("transport_drops_total", "Datagrams dropped before delivery, by reason.", "socket", "reason"),
		rxErrors:    c("transport_receive_errors_total", "Unexpected receive errors.", "socket"),
		txDatagrams: c("transport_sent_datagrams_total", "Datagrams handed to the kernel.", "socket"),
		txBytes:     c("transport_sent_bytes_total", "UDP payload octets sent.", "socket"),
		txBatches:   c("transport_send_batches_total", "Send system calls that sent datagrams.", "socket"),
		txErrors:    c("transport_send_errors_total", "Datagrams the kernel refused.", "socket"),
		fallbacks:   c("transport_batch_fallbacks_total", "Switches from batched to single-datagram system calls.", "socket", "direction"),

		dpPackets: c("dataplane_packets_total", "Packets through the data plane: out is ESP sent, in is inner packets delivered.", "direction"),
		dpDrops:   c("dataplane_drops_total", "Packets the data plane dropped, by reason.", "reason"),
	}}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, x := range []*prometheus.Desc{
		d.sas, d.children, d.rfc6311, d.exchanges, d.retransmitsSent, d.retransmitsIn, d.dpdSent, d.dpdTimeouts,
		d.syncsSent, d.syncsAnswered, d.syncsDropped, d.syncsDone, d.syncsFailed, d.malformed, d.unknownSPI, d.integrity, d.queueDrops, d.cookies,
		d.rxDatagrams, d.rxBytes, d.rxBatches, d.rxIKE, d.rxESP, d.keepalives, d.sockDrops, d.rxErrors,
		d.txDatagrams, d.txBytes, d.txBatches, d.txErrors, d.fallbacks, d.dpPackets, d.dpDrops,
	} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Engine != nil {
		c.collectEngine(ch)
	}
	if c.src.Sockets != nil {
		for _, s := range c.src.Sockets() {
			c.collectSocket(ch, s)
		}
	}
	if c.src.Dataplane != nil {
		if s, ok := c.src.Dataplane(); ok {
			counter(ch, c.d.dpPackets, s.TxPackets, "out")
			counter(ch, c.d.dpPackets, s.RxPackets, "in")
			for reason, n := range s.Drops {
				counter(ch, c.d.dpDrops, n, reason)
			}
		}
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v int, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
}

func (c *collector) collectEngine(ch chan<- prometheus.Metric) {
	d := &c.d
	// The engine keeps no per-state counts; a walk of the table per scrape
	// costs the scraper, not the packet path.
	byState := make(map[string]int, len(states))
	for _, s := range states {
		byState[s] = 0
	}
	children, midSync, replaySync := 0, 0, 0
	for _, sa := range c.src.Engine.List() {
		byState[sa.State]++
		children += len(sa.Children)
		if sa.Extensions.MIDSync {
			midSync++
		}
		if sa.Extensions.ReplaySync {
			replaySync++
		}
	}
	for s, n := range byState {
		gauge(ch, d.sas, n, s)
	}
	gauge(ch, d.children, children)
	gauge(ch, d.rfc6311, midSync, "message_id")
	gauge(ch, d.rfc6311, replaySync, "replay_counter")

	st := c.src.Engine.Stats()
	for t := range st.Exchanges {
		name := (wire.IKE_SA_INIT + wire.ExchangeType(t)).String()
		for role, rn := range [2]string{"initiator", "responder"} {
			for res, resn := range [2]string{"ok", "failed"} {
				counter(ch, d.exchanges, st.Exchanges[t][role][res].Load(), name, rn, resn)
			}
		}
	}
	counter(ch, d.retransmitsSent, st.Retransmits.Load())
	counter(ch, d.retransmitsIn, st.RetransmitsIn.Load())
	counter(ch, d.dpdSent, st.DPDSent.Load())
	counter(ch, d.dpdTimeouts, st.DPDTimeouts.Load())
	counter(ch, d.syncsSent, st.SyncsSent.Load())
	counter(ch, d.syncsAnswered, st.SyncsAnswered.Load())
	counter(ch, d.syncsDropped, st.SyncsDropped.Load())
	counter(ch, d.syncsDone, st.SyncsDone.Load())
	counter(ch, d.syncsFailed, st.SyncsFailed.Load())
	counter(ch, d.malformed, st.Malformed.Load())
	counter(ch, d.unknownSPI, st.UnknownSPI.Load())
	counter(ch, d.integrity, st.IntegrityFail.Load())
	counter(ch, d.queueDrops, st.QueueDrops.Load())
	counter(ch, d.cookies, st.CookiesSent.Load())
}

func (c *collector) collectSocket(ch chan<- prometheus.Metric, s SocketStats) {
	d, st, a := &c.d, &s.Stats, s.Addr
	counter(ch, d.rxDatagrams, st.RxDatagrams, a)
	counter(ch, d.rxBytes, st.RxBytes, a)
	counter(ch, d.rxBatches, st.RxBatches, a)
	counter(ch, d.rxIKE, st.RxIKE, a)
	counter(ch, d.rxESP, st.RxESP, a)
	counter(ch, d.keepalives, st.Keepalives, a)
	counter(ch, d.sockDrops, st.DropRunt, a, "runt")
	counter(ch, d.sockDrops, st.DropTruncated, a, "truncated")
	counter(ch, d.sockDrops, st.DropNotLocal, a, "not_local")
	counter(ch, d.sockDrops, st.DropKernel, a, "kernel")
	counter(ch, d.rxErrors, st.RxErrors, a)
	counter(ch, d.txDatagrams, st.TxDatagrams, a)
	counter(ch, d.txBytes, st.TxBytes, a)
	counter(ch, d.txBatches, st.TxBatches, a)
	counter(ch, d.txErrors, st.TxErrors, a)
	counter(ch, d.fallbacks, st.RxBatchFallbacks, a, "receive")
	counter(ch, d.fallbacks, st.TxBatchFallbacks, a, "send")
}

// MetricsHandler serves src, plus the Go runtime's and the process's own
// metrics, in the Prometheus exposition formats.
func MetricsHandler(src Sources, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := promhttp.HandlerOpts{Registry: reg}
	if log != nil {
		opts.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	return promhttp.HandlerFor(reg, opts)
}

// MetricsServer serves /metrics on a TCP address.
type MetricsServer struct {
	srv  *http.Server
	addr net.Addr
	wg   sync.WaitGroup
	once sync.Once
}

// ServeMetrics listens on addr (host:port) and serves /metrics there until
// Close. Listening happens before it returns, so a taken port is an error
// at start-up, not a log line later.
func ServeMetrics(addr string, src Sources, log *slog.Logger) (*MetricsServer, error) {
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", MetricsHandler(src, log))
	m := &MetricsServer{addr: ln.Addr(), srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint failed", "addr", addr, "err", err)
		}
	}()
	return m, nil
}

// Addr is the address the endpoint listens on (with the port chosen when
// the configured one was 0).
func (m *MetricsServer) Addr() net.Addr { return m.addr }

// Close stops the endpoint.
func (m *MetricsServer) Close() error {
	var err error
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err = m.srv.Shutdown(ctx); err != nil {
			err = m.srv.Close()
		}
		m.wg.Wait()
	})
	return err
}
