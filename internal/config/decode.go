package config

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree against the schema. Walking nodes instead
// of unmarshalling into structs is what lets every error carry a line and a
// key path, and lets one run report every problem rather than the first.
type decoder struct {
	file   string
	dir    string // directory relative file references are resolved against
	errs   Errors
	budget int // nodes left to visit; aliases can make a small file a huge tree
	redact int // >0 while decoding secrets: errors then never quote values
	// later holds checks that need the whole file decoded first:
	// references between sections and contradictions across them.
	later []func()
}

// maxNodes bounds the work one file can cause. Real configurations have a
// few thousand nodes; the bound only matters for alias bombs.
const maxNodes = 1 << 20

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// resolve follows aliases and charges the visit against the budget. It
// returns nil once the budget is spent, which every caller treats as
// "nothing to decode".
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if n = peek(n); n == nil {
		return nil
	}
	d.budget--
	if d.budget == 0 {
		d.errorf(n, "", "document too large after expanding aliases")
	}
	if d.budget <= 0 {
		return nil
	}
	return n
}

// peek follows aliases without charging the budget, for checks that look
// at a node the walker visits (and charges) anyway.
func peek(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// field describes one key of a mapping. decode runs when the key is
// present; required keys that are absent are reported at the mapping.
type field struct {
	key      string
	required bool
	decode   func(n *yaml.Node, path string)
}

// isNull reports an explicit YAML null ("key:" or "key: ~"), which the
// schema treats as the key being absent.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// mapping decodes n as a mapping with exactly the given keys. It returns
// the set of keys that were present so callers can tell "absent" from
// "zero" when applying defaults.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field) map[string]bool {
	seen := map[string]bool{}
	if n = d.resolve(n); n == nil {
		return seen
	}
	if isNull(n) {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of %s, got %s", keyList(fields), d.describe(n))
		return seen
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be plain strings, got %s", d.describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errorf(k, path, "merge keys (<<) are not supported; use an alias (*name) on a whole value instead")
			continue
		}
		name := k.Value
		kp := join(path, name)
		if l, dup := lines[name]; dup {
			d.errorf(k, kp, "duplicate key (first set on line %d)", l)
			continue
		}
		lines[name] = k.Line
		f := findField(fields, name)
		if f == nil {
			msg := "unknown key (expected one of: " + keyList(fields) + ")"
			if s := suggest(name, fields); s != "" {
				msg = "unknown key, did you mean " + strconv.Quote(s) + "? (expected one of: " + keyList(fields) + ")"
			}
			d.errorf(k, kp, "%s", msg)
			continue
		}
		if isNull(v) {
			// "key:" with nothing after it is how YAML spells absent.
			continue
		}
		seen[name] = true
		f.decode(v, kp)
	}
	for _, f := range fields {
		if f.required && !seen[f.key] {
			d.errorf(n, path, "missing required key %q", f.key)
		}
	}
	return seen
}

func findField(fields []field, key string) *field {
	for i := range fields {
		if fields[i].key == key {
			return &fields[i]
		}
	}
	return nil
}

func keyList(fields []field) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.key)
	}
	return b.String()
}

// suggest returns the valid key closest to a misspelt one, if any is close.
func suggest(key string, fields []field) string {
	best, bestDist := "", 3
	for _, f := range fields {
		if d := editDistance(key, f.key); d < bestDist {
			best, bestDist = f.key, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names a node's kind for "expected X, got Y" messages without
// quoting long values, and without quoting any value inside secrets.
func (d *decoder) describe(n *yaml.Node) string {
	if d.redact > 0 {
		switch n.Kind {
		case yaml.MappingNode:
			return "a mapping"
		case yaml.SequenceNode:
			return "a list"
		}
		return "a scalar"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			return "the number " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		case "!!null":
			return "null"
		}
		if len(n.Value) > 40 {
			return "a string"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// sequence decodes a list, calling each for every element. A single scalar
// is accepted as a one-element list when scalarOK is set, because
// "addrs: 10.0.0.1" is what an operator writes for one address.
func (d *decoder) sequence(n *yaml.Node, path string, scalarOK bool, each func(i int, n *yaml.Node, path string)) {
	if n = d.resolve(n); n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && scalarOK {
		each(0, n, path)
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", d.describe(n))
		return
	}
	for i, e := range n.Content {
		if e = d.resolve(e); e == nil {
			return
		}
		each(i, e, index(path, i))
	}
}

// scalar returns n's text if n is a scalar other than null.
func (d *decoder) scalar(n *yaml.Node, path, want string) (*yaml.Node, string, bool) {
	if n = d.resolve(n); n == nil {
		return nil, "", false
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, path, "expected %s, got %s", want, d.describe(n))
		return n, "", false
	}
	return n, n.Value, true
}

func (d *decoder) str(n *yaml.Node, path string, dst *string) bool {
	n, s, ok := d.scalar(n, path, "a string")
	if !ok {
		return false
	}
	if t := n.ShortTag(); t != "!!str" {
		// A number or boolean where text belongs is almost always a
		// mistake (an unquoted port, "no" meant as a name); make the
		// operator quote it.
		d.errorf(n, path, "expected a string, got %s (quote it if you mean the text)", d.describe(n))
		return false
	}
	*dst = s
	return true
}

func (d *decoder) boolean(n *yaml.Node, path string, dst *bool) bool {
	n, s, ok := d.scalar(n, path, "true or false")
	if !ok {
		return false
	}
	if n.ShortTag() != "!!bool" {
		d.errorf(n, path, "expected true or false, got %s", d.describe(n))
		return false
	}
	*dst = strings.EqualFold(s, "true")
	return true
}

func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64, dst *int64) bool {
	n, s, ok := d.scalar(n, path, "an integer")
	if !ok {
		return false
	}
	if n.ShortTag() != "!!int" {
		d.errorf(n, path, "expected an integer, got %s", d.describe(n))
		return false
	}
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		d.errorf(n, path, "expected an integer, got %s", d.describe(n))
		return false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "%d is out of range (%d to %d)", v, lo, hi)
		return false
	}
	*dst = v
	return true
}

func (d *decoder) intField(n *yaml.Node, path string, lo, hi int64, dst *int) bool {
	var v int64
	if !d.integer(n, path, lo, hi, &v) {
		return false
	}
	*dst = int(v)
	return true
}

// duration accepts Go duration syntax ("30s", "1h30m", "250ms") plus "d"
// for days. A bare number is rejected: "30" could mean seconds or minutes
// depending on which other VPN daemon the operator last configured.
func (d *decoder) duration(n *yaml.Node, path string, dst *time.Duration) bool {
	n, s, ok := d.scalar(n, path, "a duration")
	if !ok {
		return false
	}
	v, err := parseDuration(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return false
	}
	*dst = v
	return true
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("expected a duration like 30s, 5m or 1h")
	}
	if strings.HasSuffix(s, "d") && !strings.HasSuffix(s, "ms") {
		days, err := strconv.ParseUint(strings.TrimSuffix(s, "d"), 10, 16)
		if err == nil && days <= 365*100 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("%q has no unit (expected a duration like %ss or %sm)", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (expected a duration like 30s, 5m, 1h30m or 2d)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return v, nil
}

// size accepts a byte count: a plain integer, or a number with B, KB, MB,
// GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
func (d *decoder) size(n *yaml.Node, path string, dst *uint64) bool {
	n, s, ok := d.scalar(n, path, "a size")
	if !ok {
		return false
	}
	v, err := parseSize(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return false
	}
	*dst = v
	return true
}

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func parseSize(s string) (uint64, error) {
	num, mult := strings.TrimSpace(s), uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (expected bytes like 1048576, 500MB or 1GiB)", s)
	}
	hi, lo := bits.Mul64(v, mult)
	if hi != 0 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return lo, nil
}

// count accepts a number of packets or messages: a plain integer, one with
// a k, M or G suffix (powers of 1000), or a power of two written "2^30".
func (d *decoder) count(n *yaml.Node, path string, dst *uint64) bool {
	n, s, ok := d.scalar(n, path, "a count")
	if !ok {
		return false
	}
	v, err := parseCount(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return false
	}
	*dst = v
	return true
}

func parseCount(s string) (uint64, error) {
	bad := fmt.Errorf("%q is not a count (expected a number like 1000000, 1M or 2^30)", s)
	if exp, ok := strings.CutPrefix(s, "2^"); ok {
		e, err := strconv.ParseUint(exp, 10, 8)
		if err != nil || e > 63 {
			return 0, bad
		}
		return 1 << e, nil
	}
	num, mult := s, uint64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		num, mult = s[:len(s)-1], 1e3
	case strings.HasSuffix(s, "M"):
		num, mult = s[:len(s)-1], 1e6
	case strings.HasSuffix(s, "G"):
		num, mult = s[:len(s)-1], 1e9
	}
	v, err := strconv.ParseUint(strings.ReplaceAll(num, "_", ""), 10, 64)
	if err != nil {
		return 0, bad
	}
	hi, lo := bits.Mul64(v, mult)
	if hi != 0 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return lo, nil
}

// enum accepts one of a fixed set of words, case-insensitively, and
// stores the canonical spelling.
func (d *decoder) enum(n *yaml.Node, path string, words []string, dst *string) bool {
	want := "one of: " + strings.Join(words, ", ")
	n, s, ok := d.scalar(n, path, want)
	if !ok {
		return false
	}
	if n.ShortTag() != "!!str" {
		// "start_action: no" must not silently become a boolean.
		d.errorf(n, path, "expected %s, got %s", want, d.describe(n))
		return false
	}
	for _, w := range words {
		if strings.EqualFold(s, w) {
			*dst = w
			return true
		}
	}
	d.errorf(n, path, "unknown value %q (expected %s)", s, want)
	return false
}
