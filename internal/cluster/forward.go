package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// hashicorp/raft accepts writes only on the leader, but every node owns
// SAs. A follower therefore forwards its commands to the leader over the
// cluster's TLS listener: connForward, then frames of
//
//	request:  u32 length | command
//	response: u8 status | u16 length | message
//
// one request at a time per connection. The leader accepts SA commands only
// for the owner the client certificate names, so a node cannot write
// another node's SAs. The same frames carry the requests that must run on
// the leader but are not raft commands (membership.go); their first byte
// is not cmdVersion.
const (
	fwdOK byte = iota
	fwdRetry
	fwdOwnerChanged
	fwdRefused
)

var errRefused = errors.New("cluster: leader refused the command")

type forwarder struct {
	n    *Node
	mu   sync.Mutex
	addr string
	conn *tls.Conn
	br   *bufio.Reader
}

func (f *forwarder) forward(ctx context.Context, addr string, cmd []byte) error {
	_, err := f.call(ctx, addr, cmd)
	return err
}

// call sends one command or request to the node at addr and returns the
// message of a successful answer.
func (f *forwarder) call(ctx context.Context, addr string, req []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil && f.addr != addr {
		f.conn.Close()
		f.conn = nil
	}
	if f.conn == nil {
		c, _, err := f.n.stream.dial(addr, 2*time.Second)
		if err != nil {
			return "", err
		}
		if _, err := c.Write([]byte{connForward}); err != nil {
			c.Close()
			return "", err
		}
		f.conn, f.addr, f.br = c, addr, bufio.NewReader(c)
	}
	if dl, ok := ctx.Deadline(); ok {
		f.conn.SetDeadline(dl)
	}
	st, msg, err := f.roundTrip(req)
	if err != nil {
		f.conn.Close()
		f.conn = nil
		return "", err
	}
	return msg, statusError(st, msg)
}

// statusError turns an answer's status into the error the caller sees.
func statusError(st byte, msg string) error {
	switch st {
	case fwdOK:
		return nil
	case fwdOwnerChanged:
		return errOwnerChanged
	case fwdRefused:
		return fmt.Errorf("%w: %s", errRefused, msg)
	default:
		return fmt.Errorf("cluster: leader: %s", msg)
	}
}

func (f *forwarder) roundTrip(cmd []byte) (byte, string, error) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(cmd)))
	if _, err := (&net.Buffers{hdr[:], cmd}).WriteTo(f.conn); err != nil {
		return 0, "", err
	}
	var rh [3]byte
	if _, err := io.ReadFull(f.br, rh[:]); err != nil {
		return 0, "", err
	}
	msg := make([]byte, binary.BigEndian.Uint16(rh[1:]))
	if _, err := io.ReadFull(f.br, msg); err != nil {
		return 0, "", err
	}
	return rh[0], string(msg), nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
}

// maxForward bounds a forwarded command (a batch is split at maxEntry).
const maxForward = maxEntry + 1<<16

// serveForward runs on the leader for one follower connection.
func (n *Node) serveForward(c *tls.Conn, peer string) {
	select {
	case <-n.started:
	case <-n.stop:
		return
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		// Unblock reads when the node closes.
		select {
		case <-n.stop:
		case <-n.stream.done:
		case <-done:
		}
		c.Close()
	}()
	br := bufio.NewReader(c)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l > maxForward {
			return
		}
		cmd := make([]byte, l)
		if _, err := io.ReadFull(br, cmd); err != nil {
			return
		}
		var st byte
		var msg string
		if len(cmd) > 0 && isRequest(cmd[0]) {
			st, msg = n.serveRequest(cmd, peer)
		} else {
			st, msg = n.applyForwarded(cmd, peer)
		}
		if len(msg) > 1<<15 {
			msg = msg[:1<<15]
		}
		out := make([]byte, 3, 3+len(msg))
		out[0] = st
		binary.BigEndian.PutUint16(out[1:], uint16(len(msg)))
		if _, err := c.Write(append(out, msg...)); err != nil {
			return
		}
	}
}

func (n *Node) applyForwarded(cmd []byte, peer string) (byte, string) {
	c, err := decodeCommand(cmd)
	if err != nil {
		return fwdRefused, err.Error()
	}
	if c.kind == cmdSAs && c.owner != peer {
		return fwdRefused, fmt.Sprintf("node %q may not write SAs of %q", peer, c.owner)
	}
	if n.raft.State() != raft.Leader {
		return fwdRetry, "not the leader"
	}
	err = n.applyLocal(cmd)
	switch {
	case err == nil:
		return fwdOK, ""
	case errors.Is(err, errOwnerChanged):
		return fwdOwnerChanged, err.Error()
	default:
		return fwdRetry, err.Error()
	}
}
