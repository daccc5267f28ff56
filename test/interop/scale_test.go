package interop

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// scaleClients is the number of concurrent strongSwan clients of
// TestStrongSwanScale (issue 3: 50 clients against one responder).
const scaleClients = 50

// parallel runs f(1..n) concurrently and returns the errors by index.
func parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i-1] = f(i)
		}()
	}
	wg.Wait()
	return errs
}

func firstErrors(t *testing.T, what string, errs []error) {
	t.Helper()
	var msgs []string
	for i, err := range errs {
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("client %d: %v", i+1, err))
		}
	}
	if n := len(msgs); n > 0 {
		if n > 5 {
			msgs = append(msgs[:5], fmt.Sprintf("... and %d more", n-5))
		}
		t.Fatalf("%s failed for %d of %d clients:\n%s", what, n, len(errs), strings.Join(msgs, "\n"))
	}
}

// TestStrongSwanScale: 50 strongSwan clients, each in its own namespace on
// the gateway's bridge, initiate to one hike responder at the same time;
// every one gets its IKE and Child SA, hike lists all 50, and each client
// pings the gateway's inner address through its own tunnel, all at once.
func TestStrongSwanScale(t *testing.T) {
	start := time.Now()
	e := newEnv(t, scaleClients)
	tEnv := time.Since(start)
	e.startHike(hikePSKConf)

	mark := time.Now()
	firstErrors(t, "starting charon", parallel(scaleClients, func(i int) error {
		c := e.clients[i-1]
		dir := filepath.Join(e.dir, fmt.Sprintf("swan%d", i))
		d, err := swan.Start(c.ns, dir,
			swanConf(c, "aes256gcm16-prfsha256-x25519", "aes256gcm16", ""), swan.Options{LibIPsec: true, LogLevel: -1})
		c.swan = d
		// swan.Start waits for the VICI socket file, which charon creates
		// a moment before it accepts on it; with 50 starting at once,
		// swanctl sometimes gets there first (ECONNREFUSED, exit 111).
		for try := 0; d != nil && err != nil && try < 20; try++ {
			time.Sleep(100 * time.Millisecond)
			_, err = d.Swanctl("--load-all", "--file", filepath.Join(dir, "swanctl.conf"))
		}
		return err
	}))
	tCharon := time.Since(mark)

	mark = time.Now()
	firstErrors(t, "initiating", parallel(scaleClients, func(i int) error {
		return e.clients[i-1].swan.Initiate("net")
	}))
	tInit := time.Since(mark)

	sas := e.hikeSAs()
	if len(sas) != scaleClients {
		t.Fatalf("hike lists %d IKE SAs, want %d", len(sas), scaleClients)
	}
	firstErrors(t, "checking strongSwan's SA", parallel(scaleClients, func(i int) error {
		sas, err := e.clients[i-1].swan.SAs()
		if err != nil {
			return err
		}
		if len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 1 || sas[0].Children[0].State != "INSTALLED" {
			return fmt.Errorf("SAs %+v", sas)
		}
		return nil
	}))

	mark = time.Now()
	firstErrors(t, "ping through the tunnel", parallel(scaleClients, func(i int) error {
		c := e.clients[i-1]
		out, err := c.ns.Run("ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "3", "-I", c.inner.String(), gwInner)
		if err != nil || !strings.Contains(string(out), "3 received") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}))
	tPing := time.Since(mark)
	if n := strings.Count(e.hike.Out.String(), `msg="Child SA established"`); n != scaleClients {
		t.Fatalf("hike logged %d Child SAs, want %d", n, scaleClients)
	}
	t.Logf("%d clients: namespaces %v, charons %v, IKE+Child SAs %v, pings %v, total %v",
		scaleClients, tEnv.Round(time.Millisecond), tCharon.Round(time.Millisecond), tInit.Round(time.Millisecond),
		tPing.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
