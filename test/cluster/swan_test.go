package cluster

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hike-vpn/hike/internal/netlab/swan"
)

// addClients creates n strongSwan client namespaces, spread round robin
// over the three VIPs, and starts a charon in each. Odd clients probe with
// DPD every second, faster than hike's delay, so that hike hears them and
// never probes; even clients wait 30 s, so that hike's probes are the only
// ones: every direction of DPD runs on half of the SAs.
func (e *env) addClients(n int) error {
	first := len(e.clients) + 1
	for j := first; j < first+n; j++ {
		ns, err := e.lab.AddNS(fmt.Sprintf("c%d", j))
		if err != nil {
			return err
		}
		if err := e.lab.Attach(e.hub, "br0", fmt.Sprintf("c%d", j), ns, "eth0", netip.PrefixFrom(clientAddr(j), bridgeBits)); err != nil {
			return err
		}
		if err := ns.AddAddr("lo", netip.PrefixFrom(clientInner(j), 32)); err != nil {
			return err
		}
		c := &client{j: j, ns: ns, vip: vipOf((j-1)%nodes + 1), dpd: 30 * time.Second}
		if j%2 == 1 {
			c.dpd = time.Second
		}
		e.clients = append(e.clients, c)
	}
	return joinErrors("starting charon", parallel(n, func(i int) error {
		c := e.clients[first+i-2]
		dir := filepath.Join(e.dir, fmt.Sprintf("swan%d", c.j))
		d, err := swan.Start(c.ns, dir, c.conf(), swan.Options{LibIPsec: true})
		c.swan = d
		// swan.Start waits for the VICI socket file, which charon creates
		// a moment before it accepts on it; with many starting at once,
		// swanctl sometimes gets there first.
		for try := 0; d != nil && err != nil && try < 20; try++ {
			time.Sleep(100 * time.Millisecond)
			_, err = d.Swanctl("--load-all", "--file", filepath.Join(dir, "swanctl.conf"))
		}
		return err
	}))
}

// conf is the client's swanctl.conf. The IKE SA uses AES-CBC: strongSwan
// cannot answer an RFC 6311 sync under an AEAD IKE cipher once it has
// history (docs/rfc6311.md); ESP stays GCM.
func (c *client) conf() string {
	return fmt.Sprintf(`connections {
    gw {
        version = 2
        local_addrs = %s
        remote_addrs = %s
        proposals = aes256-sha256-ecp256
        dpd_delay = %ds
        local {
            auth = psk
            id = c%d.example
        }
        remote {
            auth = psk
            id = %%any
        }
        children {
            net {
                local_ts = %s/32
                remote_ts = 10.97.0.0/16
                esp_proposals = aes256gcm16
                mode = tunnel
            }
        }
    }
}
secrets {
    ike-gw {
        secret = %q
    }
}
`, clientAddr(c.j), c.vip, int(c.dpd/time.Second), c.j, clientInner(c.j), testPSK)
}

// initiate brings up every client's IKE and Child SA.
func (e *env) initiate() error {
	return joinErrors("initiating", parallel(len(e.clients), func(i int) error {
		return e.clients[i-1].swan.Initiate("net")
	}))
}

// clientSA returns the client's single IKE SA as strongSwan lists it, with
// an error unless it is established with one installed Child SA.
func (c *client) sa() (swan.IKESA, error) {
	sas, err := c.swan.SAs()
	if err != nil {
		return swan.IKESA{}, err
	}
	if len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 1 || sas[0].Children[0].State != "INSTALLED" {
		return swan.IKESA{}, fmt.Errorf("client %d: SAs %+v", c.j, sas)
	}
	return sas[0], nil
}

func (c *client) key(sa swan.IKESA) saKey {
	return saKey{strings.ToLower(sa.SPIi), strings.ToLower(sa.SPIr)}
}

// initCount counts the IKE_SA_INIT requests the client ever sent.
func (c *client) initCount() int {
	return strings.Count(c.swan.Log(), "generating IKE_SA_INIT request")
}

var (
	peerDPD = regexp.MustCompile(`parsed INFORMATIONAL request [1-9][0-9]* \[ \]`)
	ownDPD  = regexp.MustCompile(`parsed INFORMATIONAL response [1-9][0-9]* \[ \]`)
)

// dpdSince counts, in the client's log from offset on, DPD requests from
// hike it answered and answers to its own DPD requests.
func (c *client) dpdSince(offset int) (fromHike, answered int) {
	l := c.swan.Log()
	if offset > len(l) {
		offset = len(l)
	}
	l = l[offset:]
	return len(peerDPD.FindAllString(l, -1)), len(ownDPD.FindAllString(l, -1))
}

// startPing starts a continuous ping from the client's tunnel address to
// the inner address every node serves, five a second, with timestamps.
func (c *client) startPing() error {
	c.stopPing()
	var err error
	c.ping, err = c.ns.Start(fmt.Sprintf("ping%d", c.j), "", "ping", "-n", "-D", "-i", "0.2", "-W", "1",
		"-I", clientInner(c.j).String(), innerAddr)
	return err
}

// stopPing ends the ping (SIGINT, so that it flushes) and returns the
// times of the replies.
func (c *client) stopPing() []time.Time {
	if c.ping == nil {
		return nil
	}
	c.ping.Signal(syscall.SIGINT)
	c.ping.Wait()
	var out []time.Time
	for _, l := range strings.Split(c.ping.Out.String(), "\n") {
		if !strings.Contains(l, "bytes from") || !strings.HasPrefix(l, "[") {
			continue
		}
		end := strings.Index(l, "]")
		if end < 0 {
			continue
		}
		f, err := strconv.ParseFloat(l[1:end], 64)
		if err != nil {
			continue
		}
		out = append(out, time.Unix(0, int64(f*1e9)))
	}
	c.ping = nil
	return out
}

// gap is the longest time without a ping reply in a window.
type gap struct {
	longest time.Duration // between consecutive replies (the window's ends count as replies)
	start   time.Duration // from the window's start to the longest gap's start
	first   time.Duration // from the window's start to the first reply
	tail    time.Duration // from the last reply to the window's end
}

// broken says what is wrong with a tunnel's pings over a window: a gap
// over 3 s, or none answered in the last second (broken again later).
func (g gap) broken() string {
	switch {
	case g.longest > 3*time.Second:
		return fmt.Sprintf("pings stopped for %v", g)
	case g.tail > time.Second:
		return fmt.Sprintf("no ping answered in the last %v of the window", g.tail.Round(time.Millisecond))
	}
	return ""
}

func (g gap) String() string {
	return fmt.Sprintf("%v from +%v", g.longest.Round(time.Millisecond), g.start.Round(time.Millisecond))
}

// outage measures the replies in [from, to].
func outage(replies []time.Time, from, to time.Time) gap {
	prev := from
	g := gap{first: -1}
	for _, r := range replies {
		if r.Before(from) || r.After(to) {
			continue
		}
		if g.first < 0 {
			g.first = r.Sub(from)
		}
		if d := r.Sub(prev); d > g.longest {
			g.longest, g.start = d, prev.Sub(from)
		}
		prev = r
	}
	g.tail = to.Sub(prev)
	if g.tail > g.longest {
		g.longest, g.start = g.tail, prev.Sub(from)
	}
	if g.first < 0 {
		g.first = to.Sub(from)
	}
	return g
}
