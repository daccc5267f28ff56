// Package swan runs strongSwan's charon daemons inside netlab namespaces:
// the real peers hike's interop tests and lab talk to.
//
// Each charon gets its own directory with a generated strongswan.conf (an
// explicit plugin list: Debian's default loads every installed plugin,
// including ha), its own VICI socket, and a private /run, because charon
// insists on /run/charon.pid.
package swan

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
)

// Charon is the path of the daemon in Debian's strongswan-charon.
const Charon = "/usr/lib/ipsec/charon"

// Check reports what is missing to run strongSwan peers.
func Check() error {
	if err := netlab.Check(); err != nil {
		return err
	}
	for _, f := range []string{Charon, "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
		"/usr/lib/ipsec/plugins/libstrongswan-openssl.so"} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("swan: %s missing (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins)", f)
		}
	}
	if _, err := exec.LookPath("swanctl"); err != nil {
		return errors.New("swan: swanctl missing (apt-get install strongswan-swanctl)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return errors.New("swan: unshare missing (util-linux)")
	}
	return nil
}

// Options configure one charon.
type Options struct {
	// LibIPsec selects strongSwan's userspace ESP (kernel-libipsec), needed
	// where the kernel has no ESP. It always UDP-encapsulates ESP.
	LibIPsec bool
	// LogLevel is charon's default log level (-1..4); 1 if zero.
	LogLevel int
	// Plugins are loaded in addition to the standard set (e.g. "ha").
	Plugins []string
	// Extra is appended inside the charon { } section of strongswan.conf.
	Extra string
}

// Daemon is one running charon.
type Daemon struct {
	Dir  string
	NS   *netlab.NS
	proc *netlab.Proc
}

var basePlugins = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints curve25519 aes sha1 sha2 hmac gcm kdf gmp"

// Start writes the configuration into dir and starts charon in ns, with
// swanctlConf (the body of swanctl.conf) loaded. It returns once the daemon
// answers on its VICI socket.
func Start(ns *netlab.NS, dir string, swanctlConf string, o Options) (*Daemon, error) {
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return nil, err
	}
	for _, sub := range []string{"x509", "x509ca", "private", "ecdsa", "rsa", "pkcs8", "pubkey"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	d := &Daemon{Dir: dir, NS: ns}
	plugins := basePlugins
	if o.LibIPsec {
		// kernel-libipsec must come before kernel-netlink to provide the
		// IPsec backend.
		plugins += " kernel-libipsec"
	}
	plugins += " kernel-netlink socket-default vici updown attr " + strings.Join(o.Plugins, " ")
	level := o.LogLevel
	if level == 0 {
		level = 1
	}
	conf := fmt.Sprintf(`charon {
    load = %s
    install_routes = yes
    %s
    plugins {
        vici {
            socket = unix://%s
        }
    }
    filelog {
        main {
            path = %s
            time_format = %%T
            time_add_ms = yes
            ike_name = yes
            append = yes
            flush_line = yes
            default = %d
        }
    }
}
swanctl {
    load = pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random
}
`, plugins, o.Extra, d.vici(), filepath.Join(dir, "charon.log"), level)
	if err := os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "swanctl.conf"), []byte(swanctlConf), 0o600); err != nil {
		return nil, err
	}
	os.Remove(d.vici())
	p, err := ns.Start("charon", filepath.Join(dir, "charon.out"), "unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$1" /run && exec env STRONGSWAN_CONF="$2" "$3"`,
		"sh", filepath.Join(dir, "run"), filepath.Join(dir, "strongswan.conf"), Charon)
	if err != nil {
		return nil, err
	}
	d.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(d.vici()); err == nil {
			break
		}
		if p.Exited() || time.Now().After(deadline) {
			p.Kill()
			log, _ := os.ReadFile(filepath.Join(dir, "charon.log"))
			return nil, fmt.Errorf("swan: charon did not start in %s: %s\n%s", ns.Name, p.Out.String(), tail(string(log), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// charon creates its VICI socket a moment before it accepts on it;
	// with many daemons starting at once the first swanctl can be refused.
	for {
		_, err := d.Swanctl("--load-all", "--file", filepath.Join(dir, "swanctl.conf"))
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) || p.Exited() {
			return d, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *Daemon) vici() string { return filepath.Join(d.Dir, "charon.vici") }

// Swanctl runs swanctl against this daemon.
func (d *Daemon) Swanctl(args ...string) (string, error) {
	cmd := exec.Command("swanctl", append(args, "-u", "unix://"+d.vici())...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(d.Dir, "strongswan.conf"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 10))
	}
	return string(out), nil
}

// Log returns charon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "charon.log"))
	return string(b)
}

// Stop terminates charon.
func (d *Daemon) Stop() { d.proc.Stop(5 * time.Second) }

// Kill kills charon at once, as a crash would.
func (d *Daemon) Kill() { d.proc.Kill() }

// Initiate brings up a Child SA (and its IKE SA) and waits for the result.
func (d *Daemon) Initiate(child string) error {
	_, err := d.Swanctl("--initiate", "--child", child, "--timeout", "20")
	return err
}

// IKESA is one IKE SA as swanctl lists it.
type IKESA struct {
	Name, State       string
	SPIi, SPIr        string
	LocalID, RemoteID string
	RemoteHost        string
	RemotePort        string
	Children          []ChildSA
}

// ChildSA is one Child SA as swanctl lists it.
type ChildSA struct {
	Name, State   string
	SPIIn, SPIOut string
	BytesIn       string
	PacketsIn     string
	BytesOut      string
	PacketsOut    string
	LocalTS       []string
	RemoteTS      []string
}

// SAs lists the daemon's IKE SAs.
func (d *Daemon) SAs() ([]IKESA, error) {
	out, err := d.Swanctl("--list-sas", "--raw")
	if err != nil {
		return nil, err
	}
	var sas []IKESA
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "list-sa event ") {
			continue
		}
		root, err := parseRaw(strings.TrimPrefix(line, "list-sa event "))
		if err != nil {
			return nil, err
		}
		for name, v := range root.sections {
			sa := IKESA{Name: name, State: v.values["state"], SPIi: v.values["initiator-spi"], SPIr: v.values["responder-spi"],
				LocalID: v.values["local-id"], RemoteID: v.values["remote-id"], RemoteHost: v.values["remote-host"],
				RemotePort: v.values["remote-port"]}
			if cs := v.sections["child-sas"]; cs != nil {
				for _, c := range cs.sections {
					sa.Children = append(sa.Children, ChildSA{Name: c.values["name"], State: c.values["state"],
						SPIIn: c.values["spi-in"], SPIOut: c.values["spi-out"], BytesIn: c.values["bytes-in"],
						PacketsIn: c.values["packets-in"], BytesOut: c.values["bytes-out"], PacketsOut: c.values["packets-out"],
						LocalTS: c.lists["local-ts"], RemoteTS: c.lists["remote-ts"]})
				}
			}
			sas = append(sas, sa)
		}
	}
	return sas, nil
}

// node is a section of swanctl's --raw output: `name {k=v k=[a b] sub {...}}`.
type node struct {
	values   map[string]string
	lists    map[string][]string
	sections map[string]*node
}

func parseRaw(s string) (*node, error) {
	toks := tokenize(s)
	n, rest, err := parseNode(toks)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("swan: trailing tokens in swanctl output")
	}
	return n, nil
}

func tokenize(s string) []string {
	var toks []string
	var cur strings.Builder
	depth := 0
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for _, r := range s {
		switch {
		case r == '[':
			depth++
			cur.WriteRune(r)
		case r == ']':
			depth--
			cur.WriteRune(r)
		case depth == 0 && (r == '{' || r == '}'):
			flush()
			toks = append(toks, string(r))
		case depth == 0 && r == ' ':
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return toks
}

// parseNode parses "{ ... }" from toks.
func parseNode(toks []string) (*node, []string, error) {
	if len(toks) == 0 || toks[0] != "{" {
		return nil, nil, errors.New("swan: expected {")
	}
	n := &node{values: map[string]string{}, lists: map[string][]string{}, sections: map[string]*node{}}
	toks = toks[1:]
	for len(toks) > 0 {
		t := toks[0]
		switch {
		case t == "}":
			return n, toks[1:], nil
		case len(toks) > 1 && toks[1] == "{":
			sub, rest, err := parseNode(toks[1:])
			if err != nil {
				return nil, nil, err
			}
			n.sections[t] = sub
			toks = rest
		default:
			k, v, _ := strings.Cut(t, "=")
			if strings.HasPrefix(v, "[") {
				n.lists[k] = strings.Fields(strings.Trim(v, "[]"))
			} else {
				n.values[k] = v
			}
			toks = toks[1:]
		}
	}
	return nil, nil, errors.New("swan: unterminated section")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
