package lab

import (
	"encoding/json"
	"strings"
	"testing"
)

// goodClient is a client whose run showed a working tunnel.
func goodClient(name, spiI string) Client {
	return Client{Name: name, Namespace: "hkl0ab" + name, Kind: ClientStrongSwan, Outer: "10.99.100.2", Inner: "10.98.0.1",
		IKE:   IKESA{State: "ESTABLISHED", SPIi: spiI, SPIr: "5e6450a0561355a7", Proposal: "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519", OnGateway: true},
		Child: ChildSA{Name: "net", Proposal: "AES_GCM_16-256", SPIIn: "b0b15422", SPIOut: "d4030a28", PacketsIn: 5, PacketsOut: 6, BytesIn: 420, BytesOut: 504},
		Ping:  Ping{From: "10.98.0.1", To: "10.97.0.1", Sent: 5, Received: 5, RTTMinMS: 0.587, RTTAvgMS: 0.717, RTTMaxMS: 0.998},
		DPD:   DPD{PeriodMS: 4000, FromGateway: 1, FromClient: 3, SameIKESA: true},
		OK:    true}
}

func sampleReport() *Report {
	return &Report{Scenario: "tunnel", Summary: "tunnel: 2 strongswan clients against one hike gateway", OK: true, DurationMS: 5230,
		Steps:   []Step{{Name: "network", DurationMS: 98}, {Name: "dpd", DurationMS: 4002}},
		Gateway: Gateway{Namespace: "hkl0abgw", Outer: "10.99.0.1", Protected: "10.97.0.0/16", Dataplane: "userspace", IKESAs: 2, ChildSAs: 2, DPDSent: 2, DPDAnswered: 2},
		Clients: []Client{goodClient("c1", "2aa893a062852a2c"), goodClient("c2", "0123456789abcdef")}}
}

func render(t *testing.T, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, l) {
			t.Errorf("report lacks %q:\n%s", l, text)
		}
	}
}

func TestWriteTextOK(t *testing.T) {
	text := render(t, sampleReport())
	wantLines(t, text,
		"gateway hkl0abgw: hike at 10.99.0.1, protected network 10.97.0.0/16, userspace data plane",
		"client c1 (strongswan, namespace hkl0abc1): 10.99.100.2, inner 10.98.0.1",
		"IKE SA    ESTABLISHED, SPIs 2aa893a062852a2c (i) 5e6450a0561355a7 (r), same SPIs on hike",
		"SPIs 0123456789abcdef (i)",
		"proposal  AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519",
		"Child SA  net, ESP AES_GCM_16-256, SPIs in b0b15422 out d4030a28",
		"ping      10.98.0.1 -> 10.97.0.1: 5/5 answered, rtt min/avg/max 0.587/0.717/0.998 ms",
		"strongSwan counted 5 packets (420 bytes) in, 6 packets (504 bytes) out",
		"DPD       4s: 1 from hike answered by the client, 3 from the client answered by hike; IKE SA unchanged",
		"hike lists 2 IKE SAs and 2 Child SAs; its DPD: 2 sent, 2 answered",
		"steps: network 98ms, dpd 4s; total 5.2s",
		"result: OK")
	if strings.Contains(text, "PROBLEM") || strings.Count(text, "result    ok") != 2 {
		t.Errorf("a good run reads as a bad one:\n%s", text)
	}
}

func TestWriteTextFailed(t *testing.T) {
	r := sampleReport()
	r.OK, r.Error = false, "check: client c2: see the report"
	c := &r.Clients[1]
	c.Ping.Received = 3
	judge(c, 5)
	r.Steps[1].Error = "boom"
	r.Logs = map[string]string{"hike": "level=ERROR msg=oops", "charon c2": "giving up"}
	text := render(t, r)
	wantLines(t, text,
		"PROBLEM   3 of 5 pings answered",
		"dpd 4s (failed)",
		"--- last lines of charon c2\ngiving up",
		"--- last lines of hike\nlevel=ERROR msg=oops",
		"result: FAILED: check: client c2: see the report")
	if strings.Count(text, "result    ok") != 1 {
		t.Errorf("want exactly the good client marked ok:\n%s", text)
	}
	if strings.Index(text, "charon c2") > strings.Index(text, "--- last lines of hike") {
		t.Errorf("logs not in name order:\n%s", text)
	}
}

func TestWriteTextInterrupted(t *testing.T) {
	r := &Report{Summary: "tunnel", Interrupted: true, Error: "ping: interrupt signal received"}
	wantLines(t, render(t, r), "result: INTERRUPTED: ping: interrupt signal received")
}

// TestWriteTextEarlyFailure: a run that failed before any client existed
// still renders, without inventing SAs.
func TestWriteTextEarlyFailure(t *testing.T) {
	r := &Report{Summary: "tunnel", Error: "network: netlab: network namespaces need root"}
	text := render(t, r)
	wantLines(t, text, "gateway -:", "result: FAILED: network:")
	if strings.Contains(text, "IKE SA ") || strings.Contains(text, "client ") {
		t.Errorf("empty report shows SAs or clients:\n%s", text)
	}
}

// TestReportJSON pins the JSON names that scripts and the cluster scenario
// read.
func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		OK      bool `json:"ok"`
		Gateway struct {
			IKESAs int `json:"ike_sas"`
		} `json:"gateway"`
		Clients []struct {
			IKE struct {
				SPIi     string `json:"spi_i"`
				Proposal string `json:"proposal"`
			} `json:"ike_sa"`
			Child struct {
				PacketsIn uint64 `json:"packets_in"`
			} `json:"child_sa"`
			Ping struct {
				Received int     `json:"received"`
				RTTAvgMS float64 `json:"rtt_avg_ms"`
			} `json:"ping"`
			DPD struct {
				FromClient int `json:"from_client"`
			} `json:"dpd"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !m.OK || m.Gateway.IKESAs != 2 || len(m.Clients) != 2 {
		t.Fatalf("%s", b)
	}
	c := m.Clients[0]
	if c.IKE.SPIi != "2aa893a062852a2c" || c.IKE.Proposal == "" || c.Child.PacketsIn != 5 || c.Ping.Received != 5 ||
		c.Ping.RTTAvgMS != 0.717 || c.DPD.FromClient != 3 {
		t.Fatalf("%+v", c)
	}
	if strings.Contains(string(b), `"logs"`) || strings.Contains(string(b), `"problems"`) {
		t.Errorf("empty optional sections present: %s", b)
	}
}

// TestJudge: a client passes only when every part of its run worked; each
// defect alone fails it with its own problem.
func TestJudge(t *testing.T) {
	c := goodClient("c1", "2aa893a062852a2c")
	judge(&c, 5)
	if !c.OK || len(c.Problems) != 0 {
		t.Fatalf("good client judged bad: %v", c.Problems)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*Client)
		want  string
	}{
		{"not established", func(c *Client) { c.IKE.State = "CONNECTING" }, `IKE SA state "CONNECTING"`},
		{"unknown to hike", func(c *Client) { c.IKE.OnGateway = false }, "hike does not list"},
		{"lost ping", func(c *Client) { c.Ping.Received = 4 }, "4 of 5 pings answered"},
		{"fewer sent", func(c *Client) { c.Ping.Sent, c.Ping.Received = 3, 3 }, "3 of 5 pings answered"},
		{"no ESP in", func(c *Client) { c.Child.PacketsIn = 4 }, "4 in, want at least 5"},
		{"no ESP out", func(c *Client) { c.Child.PacketsOut = 0 }, "0 ESP packets out"},
		{"no DPD", func(c *Client) { c.DPD.FromGateway, c.DPD.FromClient = 0, 0 }, "no DPD exchange"},
		{"unanswered DPD", func(c *Client) { c.DPD.Unanswered = 2 }, "2 DPD requests of the client unanswered"},
		{"new IKE SA", func(c *Client) { c.DPD.SameIKESA = false }, "IKE SA changed"},
	} {
		c := goodClient("c1", "2aa893a062852a2c")
		tc.spoil(&c)
		judge(&c, 5)
		if c.OK || len(c.Problems) != 1 || !strings.Contains(c.Problems[0], tc.want) {
			t.Errorf("%s: ok %v, problems %q, want one containing %q", tc.name, c.OK, c.Problems, tc.want)
		}
	}
}
