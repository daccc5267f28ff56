package cluster

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Raft entries are small binary commands. The first byte is the format
// version, so a later version can change the layout and an old node can
// refuse what it does not understand instead of misreading it.
const cmdVersion = 1

const (
	cmdSAs byte = 1 // puts and deletes of SA records, from one owner
	cmdVIP byte = 2 // compare-and-set of a VIP's owner
)

const (
	opPut  byte = 1
	opDel  byte = 2
	opMIDs byte = 3 // an SA's Message IDs, in the clear: they are on the wire anyway
)

// SAKey names an IKE SA cluster-wide.
type SAKey struct {
	SPIi, SPIr uint64
}

// saOp is one put or delete. A put carries the sealed record and, in the
// clear, the local address the SA lives on: the FSM moves SAs with their
// VIP without decrypting anything.
type saOp struct {
	del        bool
	mids       bool
	key        SAKey
	local      netip.Addr
	blob       []byte
	send, recv uint32 // mids
}

type command struct {
	kind byte
	// cmdSAs
	owner string
	ops   []saOp
	// cmdVIP
	vip      netip.Addr
	from, to string
}

var errCommand = errors.New("cluster: malformed command")

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, 0)
	case a.Is4():
		v := a.As4()
		return append(append(b, 4), v[:]...)
	default:
		v := a.As16()
		return append(append(b, 16), v[:]...)
	}
}

// appendSAHeader starts a cmdSAs command; ops follow with appendOp and
// their number is implied by the length.
func appendSAHeader(b []byte, owner string) []byte {
	return appendString(append(b, cmdVersion, cmdSAs), owner)
}

func appendOp(b []byte, op *saOp) []byte {
	if op.del {
		b = append(b, opDel)
		b = binary.BigEndian.AppendUint64(b, op.key.SPIi)
		return binary.BigEndian.AppendUint64(b, op.key.SPIr)
	}
	if op.mids {
		b = append(b, opMIDs)
		b = binary.BigEndian.AppendUint64(b, op.key.SPIi)
		b = binary.BigEndian.AppendUint64(b, op.key.SPIr)
		b = binary.BigEndian.AppendUint32(b, op.send)
		return binary.BigEndian.AppendUint32(b, op.recv)
	}
	b = append(b, opPut)
	b = binary.BigEndian.AppendUint64(b, op.key.SPIi)
	b = binary.BigEndian.AppendUint64(b, op.key.SPIr)
	b = appendAddr(b, op.local)
	b = binary.AppendUvarint(b, uint64(len(op.blob)))
	return append(b, op.blob...)
}

func appendVIP(b []byte, vip netip.Addr, from, to string) []byte {
	b = append(b, cmdVersion, cmdVIP)
	b = appendAddr(b, vip)
	b = appendString(b, from)
	return appendString(b, to)
}

type reader struct {
	b   []byte
	bad bool
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	v := r.bytes(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) u64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (r *reader) string() string { return string(r.bytes(int(r.byte()))) }

func (r *reader) addr() netip.Addr {
	switch n := r.byte(); n {
	case 0:
		return netip.Addr{}
	case 4, 16:
		a, _ := netip.AddrFromSlice(r.bytes(int(n)))
		if n == 16 {
			return a.Unmap()
		}
		return a
	default:
		r.bad = true
		return netip.Addr{}
	}
}

// decodeCommand parses an entry. Blobs alias b.
func decodeCommand(b []byte) (*command, error) {
	r := &reader{b: b}
	if r.byte() != cmdVersion {
		return nil, errCommand
	}
	c := &command{kind: r.byte()}
	switch c.kind {
	case cmdSAs:
		c.owner = r.string()
		for len(r.b) > 0 && !r.bad {
			var op saOp
			switch r.byte() {
			case opPut:
				op.key = SAKey{r.u64(), r.u64()}
				op.local = r.addr()
				n, k := binary.Uvarint(r.b)
				if k <= 0 || n > uint64(len(r.b)) {
					return nil, errCommand
				}
				r.b = r.b[k:]
				op.blob = r.bytes(int(n))
			case opDel:
				op.del = true
				op.key = SAKey{r.u64(), r.u64()}
			case opMIDs:
				op.mids = true
				op.key = SAKey{r.u64(), r.u64()}
				op.send, op.recv = r.u32(), r.u32()
			default:
				return nil, errCommand
			}
			c.ops = append(c.ops, op)
		}
	case cmdVIP:
		c.vip = r.addr()
		c.from = r.string()
		c.to = r.string()
		if !c.vip.IsValid() || len(r.b) != 0 {
			return nil, errCommand
		}
	default:
		return nil, errCommand
	}
	if r.bad {
		return nil, errCommand
	}
	return c, nil
}
