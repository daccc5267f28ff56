package control_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hike-vpn/hike/internal/control"
	"github.com/hike-vpn/hike/internal/control/controltest"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/transport"
)

// fakeEngine is the engine as the collector sees it: live counters and a
// table that tests change between scrapes.
type fakeEngine struct {
	stats ike.Stats
	mu    sync.Mutex
	sas   []ike.SAInfo
}

func (e *fakeEngine) Stats() *ike.Stats { return &e.stats }

func (e *fakeEngine) List() []ike.SAInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ike.SAInfo(nil), e.sas...)
}

func (e *fakeEngine) set(sas ...ike.SAInfo) {
	e.mu.Lock()
	e.sas = sas
	e.mu.Unlock()
}

// scrape fetches h and returns every sample as "name{k=v,...}" -> value,
// labels sorted by name.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return parseMetrics(t, rec.Body)
}

func parseMetrics(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

func TestMetricsFollowEvents(t *testing.T) {
	eng := &fakeEngine{}
	sa := controltest.SA(1, 2, "rw", "198.51.100.1:500")
	sa.Children = []ike.ChildInfo{{Name: "a"}, {Name: "b"}}
	sa.Extensions.MIDSync = true
	half := controltest.SA(3, 0, "rw", "198.51.100.2:500")
	half.State = "init"
	eng.set(sa, half)

	var mu sync.Mutex
	sock := transport.Stats{RxDatagrams: 10, RxIKE: 9, DropRunt: 1}
	dp := control.DataplaneStats{TxPackets: 5, RxPackets: 4, Drops: map[string]uint64{"replay": 0}}
	h := control.MetricsHandler(control.Sources{
		Engine: eng,
		Sockets: func() []control.SocketStats {
			mu.Lock()
			defer mu.Unlock()
			return []control.SocketStats{{Addr: "192.0.2.1:500", Stats: sock}, {Addr: "192.0.2.1:4500"}}
		},
		Dataplane: func() (control.DataplaneStats, bool) {
			mu.Lock()
			defer mu.Unlock()
			return dp, true
		},
	}, nil)

	before := scrape(t, h)
	expect := func(m map[string]float64, want map[string]float64) {
		t.Helper()
		for k, v := range want {
			got, ok := m[k]
			if !ok {
				t.Errorf("missing %s", k)
			} else if got != v {
				t.Errorf("%s = %v, want %v", k, got, v)
			}
		}
	}
	expect(before, map[string]float64{
		`hike_ike_sas{state=established}`:                                           1,
		`hike_ike_sas{state=init}`:                                                  1,
		`hike_ike_sas{state=auth}`:                                                  0,
		`hike_ike_sas{state=deleting}`:                                              0,
		`hike_ike_child_sas`:                                                        2,
		`hike_ike_rfc6311_sas{sync=message_id}`:                                     1,
		`hike_ike_rfc6311_sas{sync=replay_counter}`:                                 0,
		`hike_ike_exchanges_total{exchange=INFORMATIONAL,result=ok,role=initiator}`: 0,
		`hike_ike_dpd_sent_total`:                                                   0,
		`hike_ike_syncs_answered_total`:                                             0,
		`hike_transport_received_datagrams_total{socket=192.0.2.1:500}`:             10,
		`hike_transport_ike_messages_total{socket=192.0.2.1:500}`:                   9,
		`hike_transport_drops_total{reason=runt,socket=192.0.2.1:500}`:              1,
		`hike_transport_drops_total{reason=kernel,socket=192.0.2.1:4500}`:           0,
		`hike_dataplane_packets_total{direction=out}`:                               5,
		`hike_dataplane_packets_total{direction=in}`:                                4,
		`hike_dataplane_drops_total{reason=replay}`:                                 0,
	})

	// Events: a DPD round, a failed IKE_AUTH as responder, a sync answered
	// and one dropped, an established SA gone, a replayed ESP packet.
	st := eng.Stats()
	st.DPDSent.Add(3)
	st.DPDTimeouts.Add(1)
	st.Exchanges[3][0][0].Add(3) // INFORMATIONAL, initiator, ok
	st.Exchanges[1][1][1].Add(1) // IKE_AUTH, responder, failed
	st.SyncsAnswered.Add(1)
	st.SyncsDropped.Add(2)
	st.SyncsSent.Add(4)
	st.Retransmits.Add(5)
	st.RetransmitsIn.Add(6)
	st.Malformed.Add(7)
	st.IntegrityFail.Add(8)
	st.QueueDrops.Add(9)
	st.CookiesSent.Add(10)
	st.UnknownSPI.Add(11)
	eng.set(half)
	mu.Lock()
	sock.RxDatagrams += 5
	sock.DropKernel = 2
	dp.Drops["replay"] = 1
	mu.Unlock()

	after := scrape(t, h)
	expect(after, map[string]float64{
		`hike_ike_sas{state=established}`:       0,
		`hike_ike_sas{state=init}`:              1,
		`hike_ike_child_sas`:                    0,
		`hike_ike_rfc6311_sas{sync=message_id}`: 0,
		`hike_ike_exchanges_total{exchange=INFORMATIONAL,result=ok,role=initiator}`: 3,
		`hike_ike_exchanges_total{exchange=IKE_AUTH,result=failed,role=responder}`:  1,
		`hike_ike_exchanges_total{exchange=IKE_AUTH,result=ok,role=responder}`:      0,
		`hike_ike_dpd_sent_total`:                                        3,
		`hike_ike_dpd_timeouts_total`:                                    1,
		`hike_ike_syncs_sent_total`:                                      4,
		`hike_ike_syncs_answered_total`:                                  1,
		`hike_ike_syncs_dropped_total`:                                   2,
		`hike_ike_retransmits_sent_total`:                                5,
		`hike_ike_retransmits_received_total`:                            6,
		`hike_ike_malformed_total`:                                       7,
		`hike_ike_integrity_failures_total`:                              8,
		`hike_ike_queue_drops_total`:                                     9,
		`hike_ike_cookies_sent_total`:                                    10,
		`hike_ike_unknown_spi_total`:                                     11,
		`hike_transport_received_datagrams_total{socket=192.0.2.1:500}`:  15,
		`hike_transport_drops_total{reason=kernel,socket=192.0.2.1:500}`: 2,
		`hike_dataplane_drops_total{reason=replay}`:                      1,
	})
	// The exchange matrix is complete: 4 types x 2 roles x 2 results.
	n := 0
	for k := range after {
		if strings.HasPrefix(k, "hike_ike_exchanges_total{") {
			n++
		}
	}
	if n != 16 {
		t.Errorf("%d exchange series, want 16", n)
	}
	// The Go runtime and process metrics come along.
	if _, ok := after["go_goroutines"]; !ok {
		t.Error("go_goroutines missing")
	}
}

func TestMetricsWithoutSources(t *testing.T) {
	// A daemon without a data plane (hike load) or before its sockets
	// exist still scrapes cleanly.
	m := scrape(t, control.MetricsHandler(control.Sources{Engine: &fakeEngine{}}, nil))
	if m[`hike_ike_sas{state=established}`] != 0 {
		t.Fatal("empty engine reports SAs")
	}
	for k := range m {
		if strings.HasPrefix(k, "hike_dataplane_") || strings.HasPrefix(k, "hike_transport_") {
			t.Errorf("%s exported without its source", k)
		}
	}
}

func TestServeMetrics(t *testing.T) {
	eng := &fakeEngine{}
	eng.Stats().DPDSent.Add(42)
	m, err := control.ServeMetrics("127.0.0.1:0", control.Sources{Engine: eng}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	resp, err := http.Get("http://" + m.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	got := parseMetrics(t, resp.Body)
	resp.Body.Close()
	if got["hike_ike_dpd_sent_total"] != 42 {
		t.Fatalf("hike_ike_dpd_sent_total = %v over HTTP, want 42", got["hike_ike_dpd_sent_total"])
	}
	// The address is taken while the endpoint runs, and free after Close.
	if _, err := control.ServeMetrics(m.Addr().String(), control.Sources{}, nil); err == nil {
		t.Fatal("second endpoint on a taken port")
	}
	m.Close()
	m2, err := control.ServeMetrics(m.Addr().String(), control.Sources{}, nil)
	if err != nil {
		t.Fatalf("port not released by Close: %v", err)
	}
	m2.Close()
}
