package interop

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
)

// Addresses of the NAT test: the client sits on a private LAN behind a
// router that masquerades it to the router's address on the gateway's
// bridge, picking UDP source ports from natPortLo-natPortHi.
const (
	natRouterOut = "10.99.0.254"
	natRouterLAN = "192.168.77.1"
	natClient    = "192.168.77.2"
	natPortLo    = 20000
	natPortHi    = 20999
)

// addNATClient puts a client behind a masquerading router attached to the
// gateway's bridge and returns it as client 1 of e (e must have no other
// clients), with the router's namespace.
func (e *env) addNATClient() (*client, *netlab.NS) {
	e.t.Helper()
	t := e.t
	router, err := e.lab.AddNS("nat")
	must(t, err)
	cns, err := e.lab.AddNS("c1")
	must(t, err)
	must(t, e.lab.Attach(e.gw, "br0", "vnat", router, "eth0", netip.MustParsePrefix(natRouterOut+"/16")))
	must(t, e.lab.Veth(router, "lan0", netip.MustParsePrefix(natRouterLAN+"/24"), cns, "eth0", netip.MustParsePrefix(natClient+"/24")))
	if out, err := router.Run("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Port translation from a range far from 500 and 4500, so that hike
	// can only have learnt the peer's port from the packets it received.
	rules := `table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" meta l4proto udp masquerade to :` + strconv.Itoa(natPortLo) + "-" + strconv.Itoa(natPortHi) + `
		oifname "eth0" masquerade
	}
}
`
	if out, err := router.Run("sh", "-c", "printf '%s' \"$1\" | nft -f -", "sh", rules); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	if out, err := cns.Run("ip", "route", "add", "default", "via", natRouterLAN); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c := &client{ns: cns, outer: netip.MustParseAddr(natClient), inner: netip.MustParseAddr("10.98.0.1")}
	must(t, cns.AddAddr("lo", netip.PrefixFrom(c.inner, 32)))
	e.clients = append(e.clients, c)
	return c, router
}

// TestStrongSwanNAT: a strongSwan client behind a real masquerading NAT
// (nftables, with port translation) establishes to hike. Both sides detect
// the NAT from the NAT_DETECTION hashes, IKE moves to port 4500, and
// ESP-in-UDP carries a ping and a checked TCP transfer both ways through the
// translation.
//
// kernel-libipsec always asks for UDP encapsulation, which strongSwan gets
// by faking a NAT (a bogus NAT_DETECTION_SOURCE_IP hash) when it is not
// behind one. The test therefore checks that strongSwan found its own host
// behind a NAT instead of faking it, and that hike saw the translated
// address and port.
func TestStrongSwanNAT(t *testing.T) {
	e := newEnv(t, 0)
	c, _ := e.addNATClient()
	e.startHike(hikePSKConf)
	d := e.startSwan(1, swanConf(c, "aes256gcm16-prfsha256-x25519", "aes256gcm16", ""))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}

	log := d.Log()
	if !strings.Contains(log, "local host is behind NAT") {
		t.Fatalf("strongSwan did not detect its NAT:\n%s", grepLines(log, "NAT"))
	}
	if strings.Contains(log, "faking NAT") {
		t.Fatalf("strongSwan faked the NAT instead of detecting it:\n%s", grepLines(log, "NAT"))
	}
	if strings.Contains(log, "remote host is behind NAT") {
		t.Fatalf("strongSwan thinks hike is behind a NAT:\n%s", grepLines(log, "NAT"))
	}
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || sas[0].RemotePort != "4500" || len(sas[0].Children) != 1 {
		t.Fatalf("strongSwan's SA should run on port 4500: %+v %v", sas, err)
	}

	est := grepLines(e.hike.Out.String(), `msg="IKE SA established"`)
	m := regexp.MustCompile(`remote=` + regexp.QuoteMeta(natRouterOut) + `:(\d+) .*nat=true`).FindStringSubmatch(est)
	if m == nil {
		t.Fatalf("hike should see the peer at the router's address, behind a NAT:\n%s", est)
	}
	if p, _ := strconv.Atoi(m[1]); p < natPortLo || p > natPortHi {
		t.Fatalf("hike sees the peer on port %d, not a translated one", p)
	}

	e.ping(c, gwInner, 5)
	e.tcpTransfer(c, 2<<20)
	sas, err = d.SAs()
	if err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Fatalf("%+v %v", sas, err)
	}
	if ch := sas[0].Children[0]; ch.PacketsIn == "0" || ch.PacketsOut == "0" {
		t.Fatalf("strongSwan counted no ESP: in %s out %s", ch.PacketsIn, ch.PacketsOut)
	}
	t.Logf("hike: %s", est)
	t.Logf("strongSwan:\n%s", grepLines(log, "NAT"))
}

// TestStrongSwanNATRebinding: the NAT in front of a strongSwan client
// changes its public address mid-SA (the router's address is replaced,
// which flushes its masquerade mappings), as a carrier-grade NAT or a
// router reboot does. hike follows the peer on its next authenticated
// message (RFC 7296 §2.23: the peer is behind a NAT, hike is not), moves
// the Child SA onto the new path, and traffic flows again.
func TestStrongSwanNATRebinding(t *testing.T) {
	requireTool(t, "conntrack")
	e := newEnv(t, 0)
	c, router := e.addNATClient()
	e.startHike(hikePSKConf)
	d := e.startSwan(1, swanConf(c, "aes256gcm16-prfsha256-x25519", "aes256gcm16", "dpd_delay = 1s"))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	e.ping(c, gwInner, 2)

	const newOut = "10.99.0.253"
	for _, args := range [][]string{
		// Deleted first: deleting a primary address takes the secondary
		// ones with it.
		{"ip", "addr", "del", natRouterOut + "/16", "dev", "eth0"},
		{"ip", "addr", "add", newOut + "/16", "dev", "eth0"},
		{"conntrack", "-F"}, // the mappings go with the old address
	} {
		if out, err := router.Run(args...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	waitFor(t, 10*time.Second, "hike to follow the peer to "+newOut, func() bool {
		return strings.Contains(e.hike.Out.String(), "to="+newOut+":")
	})
	// A new address is a new SA identity in the data plane (destination and
	// SPI), so hike rekeys the Child SA onto the new path.
	waitFor(t, 10*time.Second, "hike to rekey the Child SA onto the new path", func() bool {
		out := e.hike.Out.String()
		return strings.Contains(out[strings.Index(out, "to="+newOut+":"):], `msg="Child SA rekeyed"`)
	})
	e.ping(c, gwInner, 3)
	e.tcpTransfer(c, 1<<20)
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Fatalf("%+v %v", sas, err)
	}
	t.Logf("hike:\n%s", grepLines(e.hike.Out.String(), "peer moved", "rekey", "NAT"))
}
