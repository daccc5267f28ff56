// Package transport is hike's socket layer: the UDP sockets on the IKE port
// (500) and the NAT-T port (4500), for IPv4 and IPv6.
//
// One Socket is one UDP socket. Its receive loop (Serve) reads datagrams in
// batches with recvmmsg into pooled fixed-size buffers, classifies each one
// (Classify) and hands IKE messages and ESP-in-UDP packets to a Handler. On the
// NAT-T port the 4-octet non-ESP marker is stripped before an IKE message is
// delivered and added again when one is sent (RFC 3948 §2.2), and NAT
// keepalives are counted and dropped (RFC 3948 §2.3). Nothing else is
// delivered: ESP is never UDP-encapsulated on port 500.
//
// # Which address a reply leaves from
//
// A concentrator answers on several virtual IPs, and the cluster adds and
// removes them at runtime. A socket bound to a specific address cannot follow
// that, so the intended deployment is one socket per port and family bound to
// the wildcard address. Every received Packet carries Local, the destination
// address the datagram was sent to (from IP_PKTINFO / IPV6_PKTINFO); passing
// that address back as the local address of a send makes the kernel use it as
// the source, so a peer always hears back from the VIP it talked to. Should a
// VIP leave this node, sends from it fail with an error instead of silently
// leaving from another address. SetLocalAddrs restricts a wildcard socket to
// the VIPs this node currently owns; datagrams to other local addresses are
// counted and dropped. Binding to one address (with ListenConfig.FreeBind for
// an address not yet configured, and ListenConfig.ReuseAddr on both sockets
// to share the port with a wildcard socket) is also supported.
//
// # Buffers
//
// A Packet's Data aliases a receive buffer that is reused once the handler
// returns. A handler that queues the packet for later calls Retain and owns
// the buffer until it calls Release; the receive loop takes a fresh buffer
// from the pool for that slot. The buffers handlers hold are bounded per
// socket (ListenConfig.MaxRetained): when workers fall behind, the receive
// loop waits and the kernel drops, which DropKernel counts, instead of the
// heap growing. In steady state neither path allocates.
package transport
