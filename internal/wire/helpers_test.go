package wire

import (
	"errors"
	"testing"
)

// wantSyntax fails t unless err is an *Error owing INVALID_SYNTAX for p.
func wantSyntax(t *testing.T, name string, err error, p PayloadType) {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) {
		t.Errorf("%s: got %v, want *wire.Error", name, err)
		return
	}
	if we.Notify != INVALID_SYNTAX || we.Payload != p {
		t.Errorf("%s: got notify %v payload %v (%v), want INVALID_SYNTAX for %v", name, we.Notify, we.Payload, err, p)
	}
}

// hexBytes decodes a hex string that may contain spaces and newlines, as
// RFC test vectors are printed.
func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	var hi byte
	half := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		case c == ' ' || c == '\n' || c == '\t':
			continue
		default:
			t.Fatalf("bad hex character %q", c)
		}
		if half {
			out = append(out, hi<<4|v)
		} else {
			hi = v
		}
		half = !half
	}
	if half {
		t.Fatal("odd hex length")
	}
	return out
}
