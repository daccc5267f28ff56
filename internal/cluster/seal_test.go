package cluster

import (
	"bytes"
	"crypto/cipher"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hike-vpn/hike/internal/ike"
)

// TestSeal: sealed records carry no key bytes, open only under the same
// cluster key and only as the SA they were sealed for, and two records
// sealed together never share a (key, nonce) pair.
func TestSeal(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	s := &sealer{key: key}
	recs := []ike.Record{testRecord(1, vip1), testRecord(2, vip1)}
	ops, err := s.seal(recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		if bytes.Contains(op.blob, marker) {
			t.Fatal("sealed record holds key bytes")
		}
		r, err := s.open(op.key, op.blob, map[[saltSize]byte]cipher.AEAD{})
		if err != nil || !recordsEqual(r, recs[i]) {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	if bytes.Equal(ops[0].blob[1:sealHeader-4], ops[1].blob[1:sealHeader-4]) &&
		bytes.Equal(ops[0].blob[sealHeader-4:sealHeader], ops[1].blob[sealHeader-4:sealHeader]) {
		t.Fatal("two records sealed with the same salt and index")
	}
	if _, err := s.open(SAKey{9, 9}, ops[0].blob, map[[saltSize]byte]cipher.AEAD{}); err == nil {
		t.Fatal("record opened as another SA")
	}
	other := &sealer{key: bytes.Repeat([]byte{8}, KeySize)}
	if _, err := other.open(ops[0].key, ops[0].blob, map[[saltSize]byte]cipher.AEAD{}); err == nil {
		t.Fatal("record opened under another key")
	}
	more, _ := s.seal(recs[:1])
	if bytes.Equal(more[0].blob[1:1+saltSize], ops[0].blob[1:1+saltSize]) {
		t.Fatal("two calls share a salt")
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("  4ae3f55ad0064a0b93fa609ce025b72aa20d26e354026b9205fd9daa29848747\n"), 0o600)
	k, err := ReadKeyFile(good)
	if err != nil || len(k) != KeySize || k[0] != 0x4a || k[31] != 0x47 {
		t.Fatalf("%x %v", k, err)
	}
	for _, bad := range []string{"4ae3", "zz" + string(bytes.Repeat([]byte("00"), 31)), ""} {
		p := filepath.Join(dir, "bad")
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := ReadKeyFile(p); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestSlogWriter(t *testing.T) {
	var buf bytes.Buffer
	w := slogWriter{slog.New(slog.NewTextHandler(&buf, nil))}
	w.Write([]byte("2026-11-27T17:00:00.000Z [ERROR] raft: failed to contact: id=node2\n"))
	w.Write([]byte("2026-11-27T17:00:00.000Z [WARN]  raft: heartbeat timeout reached\n"))
	out := buf.String()
	if !strings.Contains(out, `level=ERROR msg="raft: failed to contact: id=node2"`) ||
		!strings.Contains(out, `level=WARN msg="raft: heartbeat timeout reached"`) {
		t.Fatalf("got:\n%s", out)
	}
}
