package config

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDocsCoverSchema asks the loader itself for the valid keys of every
// section (through the "unknown key" error) and checks that
// docs/config.md documents each one, and each default.
func TestDocsCoverSchema(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := string(doc)
	conn := "connections:\n  - name: a\n    local: {auth: psk}\n    remote: {}\n    psk: s\n    children: [{name: c}]\n"
	sections := []string{
		"zz_unknown: 1\n",
		"listen: {zz_unknown: 1}\n",
		"log: {zz_unknown: 1}\n",
		"dataplane: {zz_unknown: 1}\n",
		"state: {zz_unknown: 1}\n",
		"limits: {zz_unknown: 1}\n",
		"secrets: {s: {zz_unknown: 1}}\n",
		"pools: {p: {zz_unknown: 1}}\n",
		"connections: [{zz_unknown: 1}]\n",
		strings.Replace(conn, "{auth: psk}", "{auth: psk, zz_unknown: 1}", 1),
		strings.Replace(conn, "remote: {}", "remote: {zz_unknown: 1}", 1),
		conn + "    ike: {zz_unknown: 1}\n",
		strings.Replace(conn, "{name: c}", "{name: c, zz_unknown: 1}", 1),
		strings.Replace(conn, "{name: c}", "{name: c, esp: {zz_unknown: 1}}", 1),
		conn + "    dpd: {zz_unknown: 1}\n",
		conn + "    rfc6311: {zz_unknown: 1}\n",
		"cluster: {zz_unknown: 1}\n",
		"cluster: {tls: {zz_unknown: 1}}\n",
		"cluster: {peers: [{zz_unknown: 1}]}\n",
	}
	re := regexp.MustCompile(`zz_unknown: unknown key \(expected one of: ([^)]*)\)`)
	for _, s := range sections {
		_, err := Parse("docs.yaml", []byte(s))
		if err == nil {
			t.Fatalf("%q: no error", s)
		}
		m := re.FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("%q: no unknown-key error in:\n%v", s, err)
		}
		for _, key := range strings.Split(m[1], ", ") {
			if !strings.Contains(docs, "`"+key+"`") {
				t.Errorf("docs/config.md does not document `%s` (section %q)", key, strings.TrimSpace(s))
			}
		}
	}
	for _, v := range []string{
		short(DefaultIKERekeyTime), short(DefaultChildRekeyTime), short(DefaultDPDDelay), short(DefaultDPDTimeout),
		short(DefaultNATKeepalive), short(DefaultHeartbeatTimeout), short(DefaultElectionTimeout),
		strconv.Itoa(DefaultPort), strconv.Itoa(DefaultNATTPort), DefaultControlSocket, DefaultTUN,
		strconv.Itoa(DefaultTUNMTU), strconv.Itoa(DefaultHalfOpenCookieThreshold), strconv.Itoa(DefaultWindowSize),
		strconv.Itoa(DefaultRFC6311Margin), DefaultIKEProposals[0], DefaultIKEProposals[1],
		DefaultESPProposals[0], DefaultESPProposals[1],
	} {
		if !strings.Contains(docs, "`"+v+"`") {
			t.Errorf("docs/config.md does not mention the default `%s`", v)
		}
	}
}

// short prints a duration the way the docs write it: 4h, 30s, 500ms.
func short(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.name
		}
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
