package config

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

var (
	pkiOnce sync.Once
	pkiDir  string
	pkiErr  error
)

// testPKI returns a directory with a fresh CA, leaf certificates and keys
// (the same layout as examples/pki), generated once per test binary.
func testPKI(t *testing.T) string {
	t.Helper()
	pkiOnce.Do(func() {
		pkiDir, pkiErr = os.MkdirTemp("", "hike-config-pki-")
		if pkiErr == nil {
			pkiErr = writeExamplePKI(pkiDir)
		}
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pkiDir != "" {
		os.RemoveAll(pkiDir)
	}
	os.Exit(code)
}

// load writes text as gw.yaml into a temporary directory that also holds
// the test PKI (as pki/) and returns the result of Load.
func load(t *testing.T, text string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(testPKI(t), filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "not-a-cert.pem"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(path, []byte(strings.TrimLeft(text, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// errLines strips the temporary directory from every error line, leaving
// "gw.yaml:LINE: PATH: MESSAGE".
func errLines(t *testing.T, err error) []string {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	var out []string
	for _, e := range es {
		line := strings.Replace(e.Error(), filepath.Dir(e.File)+string(filepath.Separator), "", -1)
		out = append(out, line)
	}
	return out
}

const pskConn = `
secrets:
  rw:
    psk: "0123456789abcdef-secret"
connections:
  - name: rw
    local: {auth: psk}
    remote: {addrs: any}
    psk: rw
    children:
      - name: net
        local_ts: 10.1.0.0/16
`

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must be a prefix of one error line, in this order
	}{
		{"unknown top-level key with suggestion", `
listn:
  port: 500
`, []string{`gw.yaml:1: listn: unknown key, did you mean "listen"? (expected one of: listen, control_socket, metrics, log, dataplane, state, limits, secrets, pools, connections, cluster)`}},
		{"unknown nested key lists the valid keys", `
connections:
  - name: a
    local: {auth: psk, secret: x}
    remote: {}
    psk: s
    children: [{name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{`gw.yaml:3: connections[0].local.secret: unknown key (expected one of: addrs, id, auth, cert, key)`}},
		{"unknown algorithm", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    ike:
      proposals:
        - aes256gcm16-prfsha256-x25519
        - aes257-sha256-ecp256
    children: [{name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{`gw.yaml:9: connections[0].ike.proposals[1]: unknown algorithm "aes257" (expected one of: aes128, aes192, aes256, aes128gcm16, aes256gcm16, chacha20poly1305, prfsha1,`}},
		{"AEAD IKE proposal without PRF", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    ike: {proposals: [aes256gcm16-x25519]}
    children: [{name: c, esp: {proposals: [aes256-sha256, aes128gcm16-sha1]}}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:6: connections[0].ike.proposals[0]: "aes256gcm16-x25519": an AEAD cipher needs a PRF in IKE`,
			`gw.yaml:7: connections[0].children[0].esp.proposals[1]: "aes128gcm16-sha1": an AEAD cipher carries its own integrity check`,
		}},
		{"wrong types", `
listen:
  port: abc
  addrs: [1.2.3.4, 1.2.3.400]
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    fragmentation: "yes"
    window_size: 65
    nat_keepalive: 20
    children: {name: c}
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:2: listen.port: expected an integer, got "abc"`,
			`gw.yaml:3: listen.addrs[1]: "1.2.3.400" is not an IP address`,
			`gw.yaml:9: connections[0].fragmentation: expected true or false, got "yes"`,
			`gw.yaml:10: connections[0].window_size: 65 is out of range (1 to 64)`,
			`gw.yaml:11: connections[0].nat_keepalive: "20" has no unit (expected a duration like 20s or 20m)`,
			`gw.yaml:12: connections[0].children: expected a list, got a mapping`,
		}},
		{"a boolean where a word belongs", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    children: [{name: c, start_action: false}, {name: d, start_action: no}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:6: connections[0].children[0].start_action: expected one of: none, trap, start, got false`,
			`gw.yaml:6: connections[0].children[1].start_action: unknown value "no" (expected one of: none, trap, start)`,
		}},
		{"missing required keys", `
connections:
  - local: {}
    remote: {}
`, []string{
			`gw.yaml:2: connections[0]: missing required key "name"`,
			`gw.yaml:2: connections[0]: missing required key "children"`,
			`gw.yaml:2: connections[0].local: missing required key "auth"`,
		}},
		{"duplicate connection names", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    children: [{name: c}]
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    children: [{name: c}, {name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:7: connections[1].name: duplicate connection name "a" (first used on line 2)`,
			`gw.yaml:11: connections[1].children[1].name: duplicate child name "c" in this connection (first used on line 11)`,
		}},
		{"duplicate YAML key", `
log: {level: info}
log: {level: debug}
`, []string{`gw.yaml:2: log: duplicate key (first set on line 1)`}},
		{"pool overlaps local traffic selector", `
pools:
  rw: 10.1.2.0/24
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    pools: [rw]
    children:
      - name: c
        local_ts: [0.0.0.0/0, 10.1.0.0/16]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{`gw.yaml:11: connections[0].children[0].local_ts[1]: 10.1.0.0/16 overlaps virtual-IP pool "rw" (10.1.2.1-10.1.2.254, line 2)`}},
		{"pools overlap each other and unknown pool", `
pools:
  a: 10.9.0.0/16
  b: [10.9.1.0-10.9.1.9, "10.8.0.1/24"]
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    pools: [a, c]
    children: [{name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:3: pools.b[0]: 10.9.1.0-10.9.1.9 overlaps pool "a" (10.9.0.1-10.9.255.254, line 2)`,
			`gw.yaml:3: pools.b[1]: "10.8.0.1/24" has host bits set (did you mean 10.8.0.0/24?)`,
			`gw.yaml:9: connections[0].pools[1]: no pool named "c" in pools`,
		}},
		{"PSK auth without a secret", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    children: [{name: c}]
`, []string{`gw.yaml:2: connections[0]: missing required key "psk"`}},
		{"PSK reference to a missing secret, and a secret nobody uses", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: nope
    children: [{name: c}]
  - name: b
    local: {auth: pubkey, cert: pki/gw.pem, key: pki/gw.key}
    remote: {ca: pki/ca.pem}
    psk: nope
    children: [{name: c}]
`, []string{
			`gw.yaml:5: connections[0].psk: no secret named "nope" in secrets`,
			`gw.yaml:10: connections[1].psk: neither side authenticates with psk`,
		}},
		{"weak PSKs", `
secrets:
  a: {psk: "short"}
  b: {psk: "0x0011"}
  c: {psk: "0xzz00112233445566778899aabbccddeeff"}
  d: {psk_file: missing.psk}
`, []string{
			`gw.yaml:2: secrets.a.psk: pre-shared key is too short: at least 16 characters`,
			`gw.yaml:3: secrets.b.psk: pre-shared key is too short: hex keys need at least 16 bytes`,
			`gw.yaml:4: secrets.c.psk: pre-shared key starts with 0x but is not valid hex`,
			`gw.yaml:5: secrets.d.psk_file: `,
		}},
		{"certificate auth without cert, key and CA", `
connections:
  - name: a
    local: {auth: pubkey}
    remote: {}
    children: [{name: c}]
`, []string{
			`gw.yaml:3: connections[0].local: missing required key "cert"`,
			`gw.yaml:3: connections[0].local: missing required key "key"`,
			`gw.yaml:4: connections[0].remote: missing required key "ca"`,
		}},
		{"certificate files missing, unparsable or mismatched", `
connections:
  - name: a
    local: {auth: pubkey, cert: pki/nope.pem, key: not-a-cert.pem}
    remote: {ca: pki/gw.pem}
    children: [{name: c}]
  - name: b
    local: {auth: pubkey, cert: pki/gw.pem, key: pki/node1.key}
    remote: {ca: not-a-cert.pem}
    children: [{name: c}]
`, []string{
			`gw.yaml:3: connections[0].local.cert: pki/nope.pem: no such file or directory`,
			`gw.yaml:3: connections[0].local.key: not-a-cert.pem: no PEM private key found`,
			`gw.yaml:4: connections[0].remote.ca: pki/gw.pem: certificate "vpn.example.com" is not a CA certificate`,
			`gw.yaml:7: connections[1].local.key: pki/node1.key is not the private key of the certificate in pki/gw.pem`,
			`gw.yaml:8: connections[1].remote.ca: not-a-cert.pem: no PEM certificate found and not a DER certificate`,
		}},
		{"cert with psk auth", `
connections:
  - name: a
    local: {auth: psk, cert: pki/gw.pem}
    remote: {}
    psk: s
    children: [{name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{`gw.yaml:3: connections[0].local.cert: applies only to auth: pubkey`}},
		{"soft lifetime not below hard lifetime", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    ike: {rekey_time: 4h, lifetime: 4h}
    children:
      - name: c
        rekey_bytes: 2GiB
        life_bytes: 1GiB
        rekey_packets: 2M
        life_packets: 2^20
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:6: connections[0].ike.rekey_time: 4h0m0s must be less than lifetime (4h0m0s)`,
			`gw.yaml:9: connections[0].children[0].rekey_bytes: 2147483648 must be less than life_bytes (1073741824)`,
			`gw.yaml:11: connections[0].children[0].rekey_packets: 2000000 must be less than life_packets (1048576)`,
		}},
		{"DPD delay not positive", `
connections:
  - name: a
    local: {auth: psk}
    remote: {}
    psk: s
    dpd: {delay: 0s, timeout: -1s}
    children: [{name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:6: connections[0].dpd.delay: must be greater than 0`,
			`gw.yaml:6: connections[0].dpd.timeout: "-1s" is negative`,
		}},
		{"state key file of the wrong form", `
state:
  path: /var/lib/hike/state
  key_file: pki/gw.key
`, []string{`gw.yaml:3: state.key_file: pki/gw.key: expected 64 hexadecimal characters (a 32-byte key)`}},
		{"cluster with too few voters and a node not in the peer list", `
cluster:
  node_id: node9
  data_dir: raft
  tls: {ca: pki/ca.pem, cert: pki/node1.pem, key: pki/node1.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946"}
    - {id: node2, address: "10.0.0.2:7946"}
`, []string{
			`gw.yaml:2: cluster.node_id: node "node9" is not in peers`,
			`gw.yaml:6: cluster.peers: 2 voter(s); a cluster needs at least 3`,
		}},
		{"cluster VIPs overlap, witness owns a VIP, timeouts inverted", `
cluster:
  node_id: node1
  data_dir: raft
  election_timeout: 100ms
  tls: {ca: pki/ca.pem, cert: pki/node1.pem, key: pki/node2.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946", vips: [192.0.2.1/24]}
    - {id: node2, address: "10.0.0.2:7946", vips: ["192.0.2.2/24", 192.0.2.1]}
    - {id: node3, address: "10.0.0.1:7946", witness: true, vips: [192.0.2.9]}
    - {id: node2, address: "10.0.0.4:7946"}
`, []string{
			`gw.yaml:4: cluster.election_timeout: 100ms is shorter than heartbeat_timeout (500ms)`,
			`gw.yaml:5: cluster.tls.key: pki/node2.key is not the private key of the certificate in pki/node1.pem`,
			`gw.yaml:8: cluster.peers[1].vips[1]: VIP 192.0.2.1 is also owned by node "node1" (line 7)`,
			`gw.yaml:9: cluster.peers[2].address: address 10.0.0.1:7946 is already used by another node (line 7)`,
			`gw.yaml:9: cluster.peers[2].vips: a witness owns no VIPs`,
			`gw.yaml:10: cluster.peers[3].id: duplicate node id "node2" (first used on line 8)`,
		}},
		{"a VIP inside a virtual-IP pool", `
pools: {rw: 192.0.2.0/24}
cluster:
  node_id: node1
  data_dir: raft
  key_file: pki/cluster.key
  tls: {ca: pki/ca.pem, cert: pki/node1.pem, key: pki/node1.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946", vips: [192.0.2.1/24]}
    - {id: node2, address: "10.0.0.2:7946"}
    - {id: node3, address: "10.0.0.3:7946"}
`, []string{`gw.yaml:8: cluster.peers[0].vips[0]: VIP 192.0.2.1 lies in virtual-IP pool "rw" (192.0.2.1-192.0.2.254)`}},
		{"a data node without the cluster key", `
cluster:
  node_id: node1
  data_dir: raft
  tls: {ca: pki/ca.pem, cert: pki/node1.pem, key: pki/node1.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946"}
    - {id: node2, address: "10.0.0.2:7946"}
    - {id: node3, address: "10.0.0.3:7946"}
`, []string{`gw.yaml:2: cluster: missing required key "key_file" (the cluster key; only a witness needs none)`}},
		{"a cluster key file of the wrong form", `
cluster:
  node_id: node1
  data_dir: raft
  key_file: pki/node1.key
  tls: {ca: pki/ca.pem, cert: pki/node1.pem, key: pki/node1.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946"}
    - {id: node2, address: "10.0.0.2:7946"}
    - {id: node3, address: "10.0.0.3:7946"}
`, []string{`gw.yaml:4: cluster.key_file: pki/node1.key: expected 64 hexadecimal characters (a 32-byte key)`}},
		{"a witness takes no connections", pskConn + `
cluster:
  node_id: w
  data_dir: raft
  tls: {ca: pki/ca.pem, cert: pki/node1.pem, key: pki/node1.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946"}
    - {id: node2, address: "10.0.0.2:7946"}
    - {id: w, address: "10.0.0.3:7946", witness: true}
`, []string{`gw.yaml:5: connections: node "w" is a witness`}},
		{"start needs a peer address", `
connections:
  - name: a
    local: {auth: psk}
    remote: {addrs: 10.0.0.0/8}
    psk: s
    children: [{name: c, start_action: start}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{`gw.yaml:6: connections[0].children[0].start_action: start needs one remote address to initiate to (remote.addrs is 10.0.0.0/8)`}},
		{"empty listen list and a CA with psk auth", `
listen: {addrs: []}
connections:
  - name: a
    local: {auth: psk}
    remote: {ca: pki/ca.pem}
    psk: s
    children: [{name: c}]
secrets: {s: {psk: "0123456789abcdef"}}
`, []string{
			`gw.yaml:1: listen.addrs: empty list: IKE would be served nowhere`,
			`gw.yaml:5: connections[0].remote.ca: applies only to auth: pubkey`,
		}},
		{"YAML syntax error", `
log:
  level: info
 format: json
`, []string{`gw.yaml:2: YAML syntax: did not find expected key`}},
		{"two documents", `
log: {level: info}
---
log: {level: debug}
`, []string{`gw.yaml:2: a configuration is one YAML document`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			if err == nil {
				t.Fatal("loaded without error")
			}
			got := errLines(t, err)
			i := 0
			for _, line := range got {
				if i < len(tc.want) && strings.HasPrefix(line, tc.want[i]) {
					i++
				}
			}
			if i < len(tc.want) {
				t.Errorf("missing (in order) %q\ngot:\n%s", tc.want[i], strings.Join(got, "\n"))
			}
		})
	}
}

// TestErrorsInFileOrder checks that problems are reported together and
// sorted by line, whatever order the checks run in.
func TestErrorsInFileOrder(t *testing.T) {
	_, err := load(t, `
cluster:
  node_id: x
connections:
  - name: "bad name"
log: {level: loud}
`)
	lines := errLines(t, err)
	re := regexp.MustCompile(`^gw\.yaml:(\d+): `)
	prev := 0
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line without position: %q", l)
		}
		var n int
		fmt.Sscan(m[1], &n)
		if n < prev {
			t.Errorf("not in file order:\n%s", strings.Join(lines, "\n"))
		}
		prev = n
	}
	if len(lines) < 4 {
		t.Errorf("expected at least 4 errors, got:\n%s", strings.Join(lines, "\n"))
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const psk = "0123456789abcdef-secret"
	cfg, err := load(t, pskConn+`
  - name: cert
    local: {auth: pubkey, cert: pki/gw.pem, key: pki/gw.key}
    remote: {ca: pki/ca.pem}
    children: [{name: c}]
state: {path: st, key_file: pki/state.key}
`)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(testPKI(t), "gw.key"))
	if err != nil {
		t.Fatal(err)
	}
	stateHex := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(testPKI(t), "state.key")))))
	conn := cfg.Connection("rw")
	if string(conn.PSK.Bytes()) != psk {
		t.Fatalf("PSK not resolved")
	}
	if hex.EncodeToString(cfg.State.Key.Bytes()) != stateHex {
		t.Fatalf("state key not loaded")
	}
	certConn := cfg.Connection("cert")
	d := certConn.Local.Key.Signer()
	if d == nil {
		t.Fatal("private key not loaded")
	}
	var outputs []string
	for _, v := range []any{cfg, *cfg, conn, *conn, *certConn, certConn.Local, *cfg.State} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
	}
	j, _ := json.Marshal(conn)
	outputs = append(outputs, string(j))
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("x", "conn", conn, "psk", conn.PSK, "key", certConn.Local.Key)
	outputs = append(outputs, sb.String())
	priv := fmt.Sprintf("%x", d) // what a leak of the key's fields would look like in %x
	for _, out := range outputs {
		if strings.Contains(out, psk) || strings.Contains(out, stateHex) || strings.Contains(out, string(keyPEM[30:60])) {
			t.Fatalf("secret printed: %.300s", out)
		}
		if strings.Contains(out, priv[:20]) {
			t.Fatalf("private key printed: %.300s", out)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestErrorsDoNotQuoteSecrets(t *testing.T) {
	for _, text := range []string{
		"secrets:\n  a: {psk: 98765432109876543210}\n",
		"secrets:\n  a: \"98765432109876543210\"\n",
		"secrets:\n  a: {psk: [98765432109876543210]}\n",
		"secrets:\n  a: {psk: \"98765\"}\n",
	} {
		_, err := load(t, text)
		if err == nil {
			t.Fatalf("%q loaded", text)
		}
		if strings.Contains(err.Error(), "98765") {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := load(t, pskConn)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.Listen.Addrs); got != "[0.0.0.0 ::]" || cfg.Listen.Port != 500 || cfg.Listen.NATTPort != 4500 {
		t.Errorf("listen = %v", cfg.Listen)
	}
	if cfg.ControlSocket != "/run/hike/control.sock" || cfg.Metrics != "" {
		t.Errorf("control socket %q, metrics %q", cfg.ControlSocket, cfg.Metrics)
	}
	if cfg.Log.Level != slog.LevelInfo || cfg.Log.Format != "text" {
		t.Errorf("log = %+v", cfg.Log)
	}
	if cfg.Dataplane != (Dataplane{Kind: "auto", TUN: "hike0", TUNMTU: 1400}) {
		t.Errorf("dataplane = %+v", cfg.Dataplane)
	}
	if cfg.Limits != (Limits{HalfOpenCookieThreshold: 1000}) || cfg.State != nil || cfg.Cluster != nil {
		t.Errorf("limits %+v state %v cluster %v", cfg.Limits, cfg.State, cfg.Cluster)
	}
	c := cfg.Connections[0]
	if c.Remote.Auth != AuthPSK || !c.Remote.ID.Any() || c.Remote.Addrs != nil {
		t.Errorf("remote = %+v", c.Remote)
	}
	if c.IKE.RekeyTime != 4*time.Hour || c.IKE.Lifetime != 4*time.Hour+24*time.Minute || c.IKE.Reauth {
		t.Errorf("ike = %+v", c.IKE)
	}
	// IANA transform IDs (RFC 7296 §3.3.2 and the IKEv2 registry):
	// ENCR_AES_GCM_16 = 20, PRF_HMAC_SHA2_256 = 5, Curve25519 = 31,
	// ENCR_AES_CBC = 12, AUTH_HMAC_SHA2_256_128 = 12, ECP-256 = 19.
	wantIKE := [][]wire.Transform{
		{{Type: 1, ID: 20, KeyLen: 256}, {Type: 2, ID: 5}, {Type: 4, ID: 31}},
		{{Type: 1, ID: 12, KeyLen: 256}, {Type: 3, ID: 12}, {Type: 4, ID: 19}, {Type: 2, ID: 5}},
	}
	if got := transforms(c.IKE.Proposals); fmt.Sprint(got) != fmt.Sprint(wantIKE) {
		t.Errorf("IKE proposals = %v, want %v", got, wantIKE)
	}
	wantESP := [][]wire.Transform{
		{{Type: 1, ID: 20, KeyLen: 256}, {Type: 5, ID: 0}},
		{{Type: 1, ID: 12, KeyLen: 256}, {Type: 3, ID: 12}, {Type: 5, ID: 0}},
	}
	ch := c.Children[0]
	if got := transforms(ch.ESP); fmt.Sprint(got) != fmt.Sprint(wantESP) {
		t.Errorf("ESP proposals = %v, want %v", got, wantESP)
	}
	if ch.Rekey != (Lifetime{Time: time.Hour}) || ch.Life != (Lifetime{Time: 66 * time.Minute}) {
		t.Errorf("child lifetimes %+v / %+v", ch.Rekey, ch.Life)
	}
	if ch.Mode != "tunnel" || ch.StartAction != "none" || len(ch.RemoteTS) != 1 || !ch.RemoteTS[0].Dynamic {
		t.Errorf("child = %+v", ch)
	}
	if c.DPD != (DPD{Delay: 30 * time.Second, Timeout: 150 * time.Second}) || !c.Fragmentation || c.WindowSize != 1 || c.NATKeepalive != 20*time.Second {
		t.Errorf("connection = %+v", c)
	}
	if c.RFC6311 != (RFC6311{MessageIDSync: true, ReplayCounterSync: true, OutboundJump: 0, Margin: 16}) {
		t.Errorf("rfc6311 = %+v", c.RFC6311)
	}
}

func transforms(ps []Proposal) [][]wire.Transform {
	var out [][]wire.Transform
	for _, p := range ps {
		out = append(out, p.Transforms)
	}
	return out
}

func TestDerivedLifetimes(t *testing.T) {
	cfg, err := load(t, strings.Replace(pskConn, "        local_ts: 10.1.0.0/16", `        local_ts: 10.1.0.0/16
        lifetime: 50m
        rekey_bytes: 1GB
        life_packets: 0
    ike: {rekey_time: 0s}`, 1))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	if c.IKE.RekeyTime != 0 || c.IKE.Lifetime != 0 {
		t.Errorf("ike %v/%v, want no rekey and no expiry", c.IKE.RekeyTime, c.IKE.Lifetime)
	}
	ch := c.Children[0]
	want := Lifetime{Time: 45 * time.Minute, Bytes: 1e9}
	if ch.Rekey != want || ch.Life != (Lifetime{Time: 50 * time.Minute, Bytes: 1.1e9}) {
		t.Errorf("rekey %+v life %+v", ch.Rekey, ch.Life)
	}
}

func TestClusterLoads(t *testing.T) {
	cfg, err := load(t, `
pools: {rw: 10.30.0.0/22}
cluster:
  node_id: node2
  data_dir: raft
  key_file: pki/cluster.key
  tls: {ca: pki/ca.pem, cert: pki/node2.pem, key: pki/node2.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946", vips: [192.0.2.11/24]}
    - {id: node2, address: "10.0.0.2:7946", vips: ["192.0.2.12/24", "2001:db8::12/64"]}
    - {id: w, address: "10.0.0.3:7946", witness: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Cluster
	self := cl.Self()
	if self == nil || self.ID != "node2" || self.Address != "10.0.0.2:7946" || fmt.Sprint(self.VIPs) != "[192.0.2.12/24 2001:db8::12/64]" {
		t.Fatalf("self = %+v", self)
	}
	if !cl.Peers[2].Witness || cl.HeartbeatTimeout != 500*time.Millisecond || cl.ElectionTimeout != time.Second {
		t.Errorf("cluster = %+v", cl)
	}
	if !filepath.IsAbs(cl.DataDir) || filepath.Base(cl.DataDir) != "raft" || filepath.Base(cl.TLS.KeyFile) != "node2.key" ||
		!filepath.IsAbs(cl.KeyFile) || filepath.Base(cl.KeyFile) != "cluster.key" {
		t.Errorf("paths not resolved against the config file: %+v", cl)
	}
}

// TestWitnessConfig: a witness's file is its cluster section and the
// daemon's own settings, without connections or a cluster key.
func TestWitnessConfig(t *testing.T) {
	cfg, err := load(t, `
control_socket: /run/hike/witness.sock
log: {level: debug}
cluster:
  node_id: w
  data_dir: raft
  tls: {ca: pki/ca.pem, cert: pki/node3.pem, key: pki/node3.key}
  peers:
    - {id: node1, address: "10.0.0.1:7946", vips: [192.0.2.11/24]}
    - {id: node2, address: "10.0.0.2:7946", vips: [192.0.2.12/24]}
    - {id: w, address: "10.0.0.3:7946", witness: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.KeyFile != "" || len(cfg.Connections) != 0 {
		t.Errorf("key file %q, %d connections", cfg.Cluster.KeyFile, len(cfg.Connections))
	}
	if got, want := cfg.Summary(), "0 connections, 0 pools, data plane auto, cluster node w of 3 (witness)"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}

func TestEmptyFileIsValid(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "---\n"} {
		cfg, err := Parse("empty.yaml", []byte(text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if cfg.Listen.Port != 500 || len(cfg.Connections) != 0 {
			t.Errorf("%q: %+v", text, cfg)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/hike.yaml")
	if err == nil || err.Error() != "/nonexistent/hike.yaml: cannot read configuration: no such file or directory" {
		t.Errorf("err = %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	// Each level doubles the tree; 30 levels would be 2^30 nodes if
	// aliases were expanded without a budget.
	var b strings.Builder
	b.WriteString("a0: &a0 [x]\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	b.WriteString("listen: {addrs: *a30}\n")
	done := make(chan error, 1)
	go func() { _, err := Parse("bomb.yaml", []byte(b.String())); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("alias bomb accepted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alias bomb not bounded")
	}
}

func TestParseVIP(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.10/24": "192.0.2.10/24", "192.0.2.10": "192.0.2.10/32", "2001:db8::1/64": "2001:db8::1/64",
		"::ffff:192.0.2.10": "192.0.2.10/32", "::ffff:192.0.2.10/120": "", "::ffff:0.0.0.0/0": "", "fe80::1%eth0/64": "",
	} {
		p, err := parseVIP(in)
		switch {
		case want == "" && err == nil:
			t.Errorf("parseVIP(%q) = %v, want an error", in, p)
		case want != "" && (err != nil || p.String() != want):
			t.Errorf("parseVIP(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}
