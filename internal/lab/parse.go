package lab

import (
	"regexp"
	"strconv"
	"strings"
)

// The lab reads what the tools print: ping's summary, charon's log and
// swanctl's raw SA listing. These parsers take any input without failing;
// what they cannot find stays zero, and the report says so.

var (
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTT    = regexp.MustCompile(`rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/`)
)

// parsePing fills the counts and round-trip times of iputils ping -q output.
func parsePing(out string, p *Ping) {
	if m := pingCounts.FindStringSubmatch(out); m != nil {
		p.Sent, _ = strconv.Atoi(m[1])
		p.Received, _ = strconv.Atoi(m[2])
	}
	if m := pingRTT.FindStringSubmatch(out); m != nil {
		p.RTTMinMS, _ = strconv.ParseFloat(m[1], 64)
		p.RTTAvgMS, _ = strconv.ParseFloat(m[2], 64)
		p.RTTMaxMS, _ = strconv.ParseFloat(m[3], 64)
	}
}

// An INFORMATIONAL exchange with no payloads is a liveness check (RFC 7296
// §1.4.1); charon logs each message's payload list in brackets.
// A response is matched to its request by message ID: the response to a
// Delete carries no payloads either.
var (
	dpdReceived = regexp.MustCompile(`parsed INFORMATIONAL request (\d+) \[ \]`)
	dpdAnswered = regexp.MustCompile(`generating INFORMATIONAL response (\d+) \[ \]`)
	dpdSent     = regexp.MustCompile(`generating INFORMATIONAL request (\d+) \[ \]`)
	dpdResponse = regexp.MustCompile(`parsed INFORMATIONAL response (\d+) \[ \]`)
)

// parseDPD counts the liveness checks in a stretch of charon's log (at log
// level 1 or above): requests from the gateway that charon answered, and
// charon's own requests with and without a response.
func parseDPD(log string, d *DPD) {
	d.FromGateway, d.FromClient, d.Unanswered = 0, 0, 0
	answered := mids(dpdAnswered, log)
	for _, m := range dpdReceived.FindAllStringSubmatch(log, -1) {
		if answered[m[1]] {
			d.FromGateway++
		}
	}
	answered = mids(dpdResponse, log)
	for _, m := range dpdSent.FindAllStringSubmatch(log, -1) {
		if answered[m[1]] {
			d.FromClient++
		} else {
			d.Unanswered++
		}
	}
}

// mids is the set of message IDs re's first group captures in log.
func mids(re *regexp.Regexp, log string) map[string]bool {
	set := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		set[m[1]] = true
	}
	return set
}

// rawSA is what the lab takes from one `swanctl --list-sas --raw` event:
// the IKE SA's fields and those of its first Child SA.
type rawSA struct {
	ike, child map[string]string
}

var rawField = regexp.MustCompile(`([a-z0-9-]+)=([^\s{}\[\]]*)`)

// parseRawSA splits a raw list-sa event at its child-sas section. Only
// scalar fields are kept; nested sections other than the first child are
// ignored, which is all the report needs.
func parseRawSA(line string) rawSA {
	r := rawSA{ike: map[string]string{}, child: map[string]string{}}
	ikePart, childPart, _ := strings.Cut(line, "child-sas {")
	for _, m := range rawField.FindAllStringSubmatch(ikePart, -1) {
		if _, ok := r.ike[m[1]]; !ok {
			r.ike[m[1]] = m[2]
		}
	}
	for _, m := range rawField.FindAllStringSubmatch(childPart, -1) {
		if _, ok := r.child[m[1]]; !ok {
			r.child[m[1]] = m[2]
		}
	}
	return r
}

// proposal spells negotiated algorithms the way strongSwan prints them in
// its human-readable listing: ENCR[-bits][/INTEG][/PRF][/DH].
func proposal(f map[string]string) string {
	var parts []string
	if e := f["encr-alg"]; e != "" {
		if k := f["encr-keysize"]; k != "" {
			e += "-" + k
		}
		parts = append(parts, e)
	}
	for _, k := range []string{"integ-alg", "prf-alg", "dh-group"} {
		if v := f[k]; v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, "/")
}

func atou(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
