package cluster

import (
	"bytes"
	"encoding/binary"
	"io"
	"maps"
	"net/netip"
	"testing"

	"github.com/hashicorp/raft"
)

func TestCommandRoundTrip(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::7")
	ops := []saOp{
		{key: SAKey{1, 2}, local: vip1, blob: []byte("sealed-1")},
		{del: true, key: SAKey{3, 4}},
		{key: SAKey{5, 6}, local: v6, blob: nil},
		{key: SAKey{7, 8}, blob: []byte{0}},
		{mids: true, key: SAKey{9, 10}, send: 7, recv: 0xfffffffe},
	}
	b := appendSAHeader(nil, "node2")
	for i := range ops {
		b = appendOp(b, &ops[i])
	}
	c, err := decodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.kind != cmdSAs || c.owner != "node2" || len(c.ops) != len(ops) {
		t.Fatalf("decoded %+v", c)
	}
	for i, op := range c.ops {
		w := ops[i]
		if op.del != w.del || op.mids != w.mids || op.key != w.key || op.local != w.local || !bytes.Equal(op.blob, w.blob) ||
			op.send != w.send || op.recv != w.recv {
			t.Fatalf("op %d: %+v, want %+v", i, op, w)
		}
	}
	c, err = decodeCommand(appendVIP(nil, v6, "", "node3"))
	if err != nil || c.kind != cmdVIP || c.vip != v6 || c.from != "" || c.to != "node3" {
		t.Fatalf("VIP command: %+v %v", c, err)
	}
	for _, bad := range [][]byte{nil, {cmdVersion}, {2, cmdVIP}, {cmdVersion, 9}, appendVIP(nil, netip.Addr{}, "a", "b"),
		append(appendVIP(nil, vip1, "a", "b"), 0), b[:len(b)-1]} {
		if _, err := decodeCommand(bad); err == nil {
			t.Errorf("accepted %x", bad)
		}
	}
}

func apply(t *testing.T, f *fsm, cmd []byte) any {
	t.Helper()
	return f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd})
}

// TestFSMVIPMove: a VIP move is a compare-and-set and carries the SAs that
// live on the VIP, and only those, to the new owner.
func TestFSMVIPMove(t *testing.T) {
	var events []Event
	f := newFSM(func(e Event) { events = append(events, e) })
	if r := apply(t, f, appendVIP(nil, vip1, "", "a")); r != nil {
		t.Fatal(r)
	}
	other := netip.MustParseAddr("198.51.100.1")
	cmd := appendSAHeader(nil, "a")
	cmd = appendOp(cmd, &saOp{key: SAKey{1, 1}, local: vip1, blob: []byte("x")})
	cmd = appendOp(cmd, &saOp{key: SAKey{2, 2}, local: other, blob: []byte("y")})
	apply(t, f, cmd)
	if r := apply(t, f, appendVIP(nil, vip1, "b", "c")); r != errOwnerChanged {
		t.Fatalf("stale move: %v", r)
	}
	if r := apply(t, f, appendVIP(nil, vip1, "a", "b")); r != nil {
		t.Fatal(r)
	}
	if f.vips[vip1] != "b" || f.sas[SAKey{1, 1}].owner != "b" || f.sas[SAKey{2, 2}].owner != "a" {
		t.Fatalf("after move: vips %v, owners %s %s", f.vips, f.sas[SAKey{1, 1}].owner, f.sas[SAKey{2, 2}].owner)
	}
	want := []Event{{Kind: EventVIP, VIP: vip1, To: "a"}, {Kind: EventVIP, VIP: vip1, From: "a", To: "b"}}
	if len(events) != 2 || events[0].To != want[0].To || events[1].From != "a" || events[1].To != "b" {
		t.Fatalf("events %+v", events)
	}
	if r := apply(t, f, []byte{1, 2, 3}); r == nil {
		t.Fatal("malformed command accepted")
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

func snapshotOf(t testing.TB, f *fsm) []byte {
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := s.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

func TestFSMSnapshotRoundTrip(t *testing.T) {
	f := newFSM(nil)
	apply(t, f, appendVIP(nil, vip1, "", "a"))
	cmd := appendSAHeader(nil, "a")
	for i := range 100 {
		cmd = appendOp(cmd, &saOp{key: SAKey{uint64(i), 9}, local: vip1, blob: bytes.Repeat([]byte{byte(i)}, i*40)})
	}
	apply(t, f, cmd)
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{mids: true, key: SAKey{7, 9}, send: 70, recv: 71}))
	var events []Event
	g := newFSM(func(e Event) { events = append(events, e) })
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))); err != nil {
		t.Fatal(err)
	}
	if len(g.sas) != 100 || g.vips[vip1] != "a" || len(events) != 1 || events[0].To != "a" {
		t.Fatalf("restored %d SAs, vips %v, events %+v", len(g.sas), g.vips, events)
	}
	for k, e := range f.sas {
		h := g.sas[k]
		if h == nil || h.owner != e.owner || h.local != e.local || !bytes.Equal(h.blob, e.blob) ||
			h.hasMIDs != e.hasMIDs || h.send != e.send || h.recv != e.recv {
			t.Fatalf("SA %v differs", k)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(appendVIP(nil, vip1, "node1", "node2"))
	sa := appendSAHeader(nil, "node1")
	sa = appendOp(sa, &saOp{key: SAKey{1, 2}, local: vip1, blob: []byte("blob")})
	sa = appendOp(sa, &saOp{del: true, key: SAKey{3, 4}})
	f.Add(sa)
	f.Add([]byte{cmdVersion, cmdSAs, 0, opPut})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		var out []byte
		switch c.kind {
		case cmdSAs:
			out = appendSAHeader(nil, c.owner)
			for i := range c.ops {
				out = appendOp(out, &c.ops[i])
			}
		case cmdVIP:
			out = appendVIP(nil, c.vip, c.from, c.to)
		}
		if !bytes.Equal(out, b) {
			// IPv4-mapped IPv6 addresses are stored unmapped.
			if c2, err := decodeCommand(out); err != nil || c2.kind != c.kind || len(c2.ops) != len(c.ops) {
				t.Fatalf("re-encoding %x gave %x", b, out)
			}
		}
		newFSM(nil).Apply(&raft.Log{Type: raft.LogCommand, Data: b})
	})
}

func FuzzRestore(f *testing.F) {
	g := newFSM(nil)
	g.Apply(&raft.Log{Type: raft.LogCommand, Data: appendVIP(nil, vip1, "", "a")})
	g.Apply(&raft.Log{Type: raft.LogCommand, Data: appendOp(appendSAHeader(nil, "a"), &saOp{key: SAKey{1, 2}, local: vip1, blob: []byte("blob")})})
	f.Add(snapshotOf(f, g))
	f.Add([]byte(snapMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		newFSM(nil).Restore(io.NopCloser(bytes.NewReader(b)))
	})
}

// TestAssign: least loaded first, ties by ID, load counts what was just
// assigned; only the nodes offered (survivors without witnesses) receive.
func TestAssign(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	c := netip.MustParseAddr("192.0.2.3")
	got := assign([]netip.Addr{c, a, b}, map[string]int{"node3": 1, "node2": 1, "node4": 2})
	want := []assignment{{a, "node2"}, {b, "node3"}, {c, "node2"}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if got := assign([]netip.Addr{a}, map[string]int{}); len(got) != 0 {
		t.Fatalf("assigned without survivors: %v", got)
	}
}

// TestFSMStaleWriter: once an SA's VIP has moved, its former server can
// neither overwrite nor delete it (a write that was on its way during the
// move), and nobody can create an SA on a VIP another node owns.
func TestFSMStaleWriter(t *testing.T) {
	f := newFSM(nil)
	apply(t, f, appendVIP(nil, vip1, "", "a"))
	put := func(owner string, k SAKey, blob string) []byte {
		return appendOp(appendSAHeader(nil, owner), &saOp{key: k, local: vip1, blob: []byte(blob)})
	}
	apply(t, f, put("a", SAKey{1, 1}, "a1"))
	apply(t, f, appendVIP(nil, vip1, "a", "b"))
	apply(t, f, put("a", SAKey{1, 1}, "late"))
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{del: true, key: SAKey{1, 1}}))
	apply(t, f, put("a", SAKey{2, 2}, "new on b's VIP"))
	if e := f.sas[SAKey{1, 1}]; e == nil || e.owner != "b" || string(e.blob) != "a1" {
		t.Fatalf("SA after late writes of its former owner: %+v", e)
	}
	if _, ok := f.sas[SAKey{2, 2}]; ok {
		t.Fatal("an SA was created on a VIP its writer does not own")
	}
	if got := f.stats.saStale.Load(); got != 3 {
		t.Fatalf("%d writes refused, want 3", got)
	}
	apply(t, f, put("b", SAKey{1, 1}, "b1"))
	if e := f.sas[SAKey{1, 1}]; string(e.blob) != "b1" {
		t.Fatalf("the owner's write was refused: %q", e.blob)
	}
}

// TestFSMOwnedCounts: the per-owner counts follow puts, deletes, VIP
// moves and a snapshot restore, as a walk over the SAs would count them.
func TestFSMOwnedCounts(t *testing.T) {
	f := newFSM(nil)
	walk := func(f *fsm) map[string]int {
		m := map[string]int{}
		for _, e := range f.sas {
			m[e.owner]++
		}
		return m
	}
	check := func(f *fsm, what string) {
		t.Helper()
		got := map[string]int{}
		for o, c := range f.owned {
			if c != 0 {
				got[o] = c
			}
		}
		if want := walk(f); !maps.Equal(got, want) {
			t.Fatalf("%s: counts %v, walk %v", what, got, want)
		}
	}
	other := netip.MustParseAddr("198.51.100.9")
	apply(t, f, appendVIP(nil, vip1, "", "a"))
	cmd := appendSAHeader(nil, "a")
	for i := range 5 {
		local := vip1
		if i%2 == 0 {
			local = other
		}
		cmd = appendOp(cmd, &saOp{key: SAKey{uint64(i), 1}, local: local, blob: []byte("x")})
	}
	apply(t, f, cmd)
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{key: SAKey{0, 1}, local: other, blob: []byte("again")}))
	check(f, "puts")
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{del: true, key: SAKey{2, 1}}))
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{del: true, key: SAKey{99, 1}}))
	check(f, "deletes")
	apply(t, f, appendVIP(nil, vip1, "a", "b"))
	check(f, "VIP move")
	if f.owned["b"] != 2 || f.owned["a"] != 2 {
		t.Fatalf("after the move: %v", f.owned)
	}
	g := newFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))); err != nil {
		t.Fatal(err)
	}
	check(g, "snapshot")
}

// TestFSMMIDs: Message ID updates land on the owner's SA, are refused
// from anyone else and for SAs the state does not hold, and give way to
// the next whole record.
func TestFSMMIDs(t *testing.T) {
	f := newFSM(nil)
	apply(t, f, appendVIP(nil, vip1, "", "a"))
	mids := func(owner string, k SAKey, send, recv uint32) []byte {
		return appendOp(appendSAHeader(nil, owner), &saOp{mids: true, key: k, send: send, recv: recv})
	}
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{key: SAKey{1, 1}, local: vip1, blob: []byte("r1")}))
	apply(t, f, mids("a", SAKey{1, 1}, 5, 6))
	apply(t, f, mids("b", SAKey{1, 1}, 50, 60))
	apply(t, f, mids("a", SAKey{2, 2}, 5, 6))
	e := f.sas[SAKey{1, 1}]
	if !e.hasMIDs || e.send != 5 || e.recv != 6 || f.sas[SAKey{2, 2}] != nil {
		t.Fatalf("after updates: %+v", e)
	}
	if f.stats.saMIDs.Load() != 1 || f.stats.saStale.Load() != 2 {
		t.Fatalf("applied %d, refused %d", f.stats.saMIDs.Load(), f.stats.saStale.Load())
	}
	apply(t, f, appendOp(appendSAHeader(nil, "a"), &saOp{key: SAKey{1, 1}, local: vip1, blob: []byte("r2")}))
	if e := f.sas[SAKey{1, 1}]; e.hasMIDs {
		t.Fatal("a whole record kept older Message IDs")
	}
}

// TestFSMRestoreV1: a snapshot written before Message ID updates existed
// (no per-SA flag) still restores.
func TestFSMRestoreV1(t *testing.T) {
	b := []byte(snapMagicV1)
	b = binary.AppendUvarint(b, 1)
	b = appendString(appendAddr(b, vip1), "a")
	b = binary.AppendUvarint(b, 1)
	b = binary.BigEndian.AppendUint64(b, 5)
	b = binary.BigEndian.AppendUint64(b, 6)
	b = appendString(b, "a")
	b = appendAddr(b, vip1)
	b = binary.AppendUvarint(b, 3)
	b = append(b, "rec"...)
	f := newFSM(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	e := f.sas[SAKey{5, 6}]
	if e == nil || e.owner != "a" || string(e.blob) != "rec" || e.hasMIDs || f.vips[vip1] != "a" || f.owned["a"] != 1 {
		t.Fatalf("restored %+v, vips %v", e, f.vips)
	}
}
