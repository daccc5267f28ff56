package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// tunRoutes lists the routes through hike's TUN device in the gateway.
func (e *env) tunRoutes() string {
	e.t.Helper()
	out, err := e.gw.Run("ip", "route", "show", "dev", "hike0")
	if err != nil {
		e.t.Fatalf("ip route: %v: %s", err, out)
	}
	return string(out)
}

// deleteEnv is a strongSwan client with an established tunnel to hike,
// routed through hike's TUN device.
func deleteEnv(t *testing.T) (*env, *client, *swan.Daemon) {
	e := newEnv(t, 1)
	e.dpd = "2s"
	e.startHike(hikePSKConf)
	c := e.clients[0]
	d := e.startSwan(1, swanConf(c, "aes256gcm16-prfsha256-x25519", "aes256gcm16", "dpd_delay = 3s"))
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	e.agreed(d, 10*time.Second, "the tunnel", func(spis) bool { return true })
	e.pingFromGW(c, 2)
	if !strings.Contains(e.tunRoutes(), c.inner.String()) {
		t.Fatalf("no route to %s through hike0:\n%s", c.inner, e.tunRoutes())
	}
	return e, c, d
}

// gone checks that no SA is left on either side and that hike has taken
// back its route, so the gateway can no longer reach the client.
func (e *env) gone(c *client, d *swan.Daemon) {
	e.t.Helper()
	waitFor(e.t, 5*time.Second, "both sides to drop their SAs", func() bool {
		sas, err := d.SAs()
		return err == nil && len(sas) == 0 && len(e.hikeSAs()) == 0
	})
	waitFor(e.t, 3*time.Second, "hike to remove the route through hike0", func() bool {
		return !strings.Contains(e.tunRoutes(), c.inner.String())
	})
	if out, ok := e.pingGW(c, 2); ok {
		e.t.Fatalf("the gateway still reaches %s after the delete:\n%s", c.inner, out)
	}
}

// TestDeleteIKEByStrongSwan: strongSwan deletes the IKE SA; hike removes
// it with its Child SA, route and data-plane state.
func TestDeleteIKEByStrongSwan(t *testing.T) {
	e, c, d := deleteEnv(t)
	if _, err := d.Swanctl("--terminate", "--ike", "gw"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.hike.Out.String(), `msg="peer deletes IKE SA"`) {
		waitFor(t, 3*time.Second, "hike to log the delete", func() bool {
			return strings.Contains(e.hike.Out.String(), `msg="peer deletes IKE SA"`)
		})
	}
	e.gone(c, d)
	if !strings.Contains(d.Log(), "IKE_SA deleted") {
		t.Fatal("charon did not complete its delete (no response from hike?)")
	}
}

// TestDeleteIKEByHike: `hike sa terminate` deletes the IKE SA; strongSwan
// confirms, and both sides drop everything.
func TestDeleteIKEByHike(t *testing.T) {
	e, c, d := deleteEnv(t)
	sas := e.hikeSAs()
	if len(sas) != 1 {
		t.Fatalf("hike SAs: %v", sas)
	}
	ref, _ := sas[0]["id"].(string)
	if out, err := e.hikeCtl("sa", "terminate", ref); err != nil {
		t.Fatalf("hike sa terminate %s: %v\n%s", ref, err, out)
	}
	if !strings.Contains(d.Log(), "received DELETE for IKE_SA gw") {
		t.Fatal("charon did not receive a Delete for the IKE SA")
	}
	e.gone(c, d)
}

// TestDeleteChildByStrongSwan: strongSwan deletes only the Child SA; the
// IKE SA stays up on both sides (DPD still runs on it) and a new Child SA
// can be created on it.
func TestDeleteChildByStrongSwan(t *testing.T) {
	e, c, d := deleteEnv(t)
	before := e.agreed(d, time.Second, "the tunnel", func(spis) bool { return true })
	if _, err := d.Swanctl("--terminate", "--child", "net"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "hike to delete the Child SA only", func() bool {
		sas := e.hikeSAs()
		if len(sas) != 1 {
			return false
		}
		in, _ := hikeChildSPIs(sas[0])
		return len(in) == 0
	})
	waitFor(t, 3*time.Second, "hike to remove the route through hike0", func() bool {
		return !strings.Contains(e.tunRoutes(), c.inner.String())
	})
	sas, err := d.SAs()
	if err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 0 {
		t.Fatalf("strongSwan after the Child SA delete: %+v %v", sas, err)
	}
	h := e.hikeSA()
	if normSPI(sas[0].SPIi) != before.ikeI || normSPI(h["spi_i"].(string)) != before.ikeI {
		t.Fatalf("the IKE SA changed: %+v %v", sas, h)
	}
	if out, ok := e.pingGW(c, 2); ok {
		t.Fatalf("the gateway still reaches %s without a Child SA:\n%s", c.inner, out)
	}
	e.dpdBothWays(d)
	// A new Child SA on the same IKE SA (CREATE_CHILD_SA) carries traffic.
	if err := d.Initiate("net"); err != nil {
		t.Fatal(err)
	}
	after := e.agreed(d, 5*time.Second, "a new Child SA", func(s spis) bool { return s.in != before.in })
	if after.ikeI != before.ikeI {
		t.Fatalf("a new IKE SA instead of a Child SA: %v -> %v", before, after)
	}
	e.pingFromGW(c, 3)
	e.ping(c, gwInner, 3)
}
