package lab

import (
	"slices"
	"testing"
)

// Output of iputils-ping 20221126 (Debian 12) with -q.
const pingAll = `PING 10.97.0.1 (10.97.0.1) from 10.98.0.1 : 56(84) bytes of data.

--- 10.97.0.1 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 809ms
rtt min/avg/max/mdev = 0.587/0.717/0.998/0.145 ms
`

const pingNone = `PING 10.97.0.1 (10.97.0.1) from 10.98.0.1 : 56(84) bytes of data.

--- 10.97.0.1 ping statistics ---
5 packets transmitted, 0 received, 100% packet loss, time 4098ms

`

const pingSome = `--- 10.97.0.1 ping statistics ---
5 packets transmitted, 3 received, +2 errors, 40% packet loss, time 812ms
rtt min/avg/max/mdev = 1.012/2.5/4.75/1.1 ms
`

func TestParsePing(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      Ping
	}{
		{"all", pingAll, Ping{Sent: 5, Received: 5, RTTMinMS: 0.587, RTTAvgMS: 0.717, RTTMaxMS: 0.998}},
		{"none", pingNone, Ping{Sent: 5}},
		{"some", pingSome, Ping{Sent: 5, Received: 3, RTTMinMS: 1.012, RTTAvgMS: 2.5, RTTMaxMS: 4.75}},
		{"busybox", "3 packets transmitted, 2 packets received, 33% packet loss\n", Ping{Sent: 3, Received: 2}},
		{"garbage", "ping: connect: Network is unreachable\n", Ping{}},
	} {
		var p Ping
		parsePing(tc.out, &p)
		if p != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, p, tc.want)
		}
	}
}

// A stretch of charon 5.9.8's log at level 1: the gateway's check (MID 0),
// charon's own checks (2 and 3 answered, 4 not yet), and a Delete, which is
// an INFORMATIONAL exchange but no liveness check.
const charonLog = `16:36:37.417 14[ENC] <gw|1> parsed INFORMATIONAL request 0 [ ]
16:36:37.417 14[ENC] <gw|1> generating INFORMATIONAL response 0 [ ]
16:36:37.418 14[NET] <gw|1> sending packet: from 10.99.100.2[4500] to 10.99.0.1[4500] (80 bytes)
16:36:38.389 09[IKE] <gw|1> sending DPD request
16:36:38.390 09[ENC] <gw|1> generating INFORMATIONAL request 2 [ ]
16:36:38.391 13[ENC] <gw|1> parsed INFORMATIONAL response 2 [ ]
16:36:39.390 12[IKE] <gw|1> sending DPD request
16:36:39.390 12[ENC] <gw|1> generating INFORMATIONAL request 3 [ ]
16:36:39.391 14[ENC] <gw|1> parsed INFORMATIONAL response 3 [ ]
16:36:40.112 05[ENC] <gw|1> parsed INFORMATIONAL request 1 [ D ]
16:36:40.112 05[ENC] <gw|1> generating INFORMATIONAL response 1 [ ]
16:36:40.390 12[IKE] <gw|1> sending DPD request
16:36:40.390 12[ENC] <gw|1> generating INFORMATIONAL request 4 [ ]
`

func TestParseDPD(t *testing.T) {
	var d DPD
	parseDPD(charonLog, &d)
	// The response to the Delete carries no payload either; the request
	// it answers decides, so it must not count.
	want := DPD{FromGateway: 1, FromClient: 2, Unanswered: 1}
	if d != want {
		t.Fatalf("%+v, want %+v", d, want)
	}
	d = DPD{FromGateway: 7, FromClient: 7, Unanswered: 7}
	parseDPD("", &d)
	if d != (DPD{}) {
		t.Fatalf("empty log: %+v", d)
	}
}

// One event of `swanctl --list-sas --raw` from strongSwan 5.9.8.
const rawGCM = `{gw {uniqueid=1 version=2 state=ESTABLISHED local-host=10.99.100.2 local-port=4500 local-id=c1.hike-lab.example remote-host=10.99.0.1 remote-port=4500 remote-id=gw.hike-lab.example initiator=yes initiator-spi=2aa893a062852a2c responder-spi=5e6450a0561355a7 nat-fake=yes nat-any=yes encr-alg=AES_GCM_16 encr-keysize=256 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=7 rekey-time=13447 child-sas {net-1 {name=net uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=b0b15422 spi-out=d4030a28 encr-alg=AES_GCM_16 encr-keysize=256 bytes-in=420 packets-in=5 use-in=6 bytes-out=420 packets-out=5 use-out=6 rekey-time=3472 life-time=3953 install-time=7 local-ts=[10.98.0.1/32] remote-ts=[10.97.0.0/16]}}}}`

// The same with a CBC suite: the integrity algorithm joins the proposal.
const rawCBC = `{gw {state=ESTABLISHED initiator-spi=0102030405060708 responder-spi=1112131415161718 encr-alg=AES_CBC encr-keysize=256 integ-alg=HMAC_SHA2_256_128 prf-alg=PRF_HMAC_SHA2_256 dh-group=ECP_256 child-sas {net-2 {name=net spi-in=c0000001 spi-out=c0000002 encr-alg=AES_CBC encr-keysize=128 integ-alg=HMAC_SHA1_96 packets-in=0}}}}`

func TestParseRawSA(t *testing.T) {
	r := parseRawSA(rawGCM)
	for k, want := range map[string]string{"state": "ESTABLISHED", "initiator-spi": "2aa893a062852a2c", "responder-spi": "5e6450a0561355a7"} {
		if r.ike[k] != want {
			t.Errorf("IKE %s = %q, want %q", k, r.ike[k], want)
		}
	}
	for k, want := range map[string]string{"name": "net", "spi-in": "b0b15422", "spi-out": "d4030a28", "packets-in": "5", "bytes-out": "420"} {
		if r.child[k] != want {
			t.Errorf("child %s = %q, want %q", k, r.child[k], want)
		}
	}
	if p := proposal(r.ike); p != "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519" {
		t.Errorf("IKE proposal %q", p)
	}
	if p := proposal(r.child); p != "AES_GCM_16-256" {
		t.Errorf("ESP proposal %q", p)
	}
	r = parseRawSA(rawCBC)
	if p := proposal(r.ike); p != "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256" {
		t.Errorf("IKE proposal %q", p)
	}
	if p := proposal(r.child); p != "AES_CBC-128/HMAC_SHA1_96" {
		t.Errorf("ESP proposal %q", p)
	}
	if r = parseRawSA("{gw {state=CONNECTING}}"); len(r.child) != 0 || r.ike["state"] != "CONNECTING" {
		t.Errorf("SA without children: %+v", r)
	}
}

func TestLabNamespaces(t *testing.T) {
	list := "hi35pgw\nhkl0abc1 (id: 4)\nhkl0abgw (id: 3)\nhkl0acgw\nplhub\n\n"
	got := labNamespaces(list, "hkl0ab")
	if !slices.Equal(got, []string{"hkl0abc1", "hkl0abgw"}) {
		t.Fatalf("%q", got)
	}
}

func TestPIDTag(t *testing.T) {
	seen := map[string]int{}
	for _, pid := range []int{1, 35, 36, 4321, 46655, 46656 + 7, 4194304} {
		tag := pidTag(pid)
		if len(tag) != 3 {
			t.Errorf("pidTag(%d) = %q, want 3 characters", pid, tag)
		}
		if other, dup := seen[tag]; dup && pid%46656 != other%46656 {
			t.Errorf("pids %d and %d share tag %q", pid, other, tag)
		}
		seen[tag] = pid
	}
}

// FuzzParsers: the parsers read other programs' output and must take
// anything without panicking or counting below zero.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{pingAll, pingNone, pingSome, charonLog, rawGCM, rawCBC, "", "child-sas {", "a=[b c] {x=y}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p Ping
		parsePing(s, &p)
		var d DPD
		parseDPD(s, &d)
		if d.FromGateway < 0 || d.FromClient < 0 || d.Unanswered < 0 {
			t.Fatalf("negative counts %+v", d)
		}
		r := parseRawSA(s)
		proposal(r.ike)
		proposal(r.child)
		labNamespaces(s, "hkl")
	})
}
