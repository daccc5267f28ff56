package state

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hike-vpn/hike/internal/ike"
)

func TestSaveLoad(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	path := filepath.Join(t.TempDir(), "sub", "state")
	secret := []byte("SK_d-must-not-appear-in-plaintext")
	f := &File{Clean: true, Records: []ike.Record{{Version: 1, Conn: "c", SPIi: 1, SPIr: 2,
		Keys: ike.RecordKeys{D: secret}}}}
	if err := Save(path, key, f); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, secret) || bytes.Contains(raw, []byte(`"conn"`)) {
		t.Fatal("state file holds plaintext")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v", st.Mode().Perm())
	}
	g, err := Load(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Clean || len(g.Records) != 1 || !bytes.Equal(g.Records[0].Keys.D, secret) || g.Records[0].SPIr != 2 {
		t.Fatalf("loaded %+v", g)
	}
	wrong := bytes.Repeat([]byte{8}, KeySize)
	if _, err := Load(path, wrong); err == nil {
		t.Fatal("loaded with the wrong key")
	}
	raw[len(raw)-1] ^= 1
	os.WriteFile(path, raw, 0o600)
	if _, err := Load(path, key); err == nil {
		t.Fatal("loaded a corrupted file")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none"), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if err := Save(path, key[:16], f); err == nil {
		t.Fatal("short key accepted")
	}
}
