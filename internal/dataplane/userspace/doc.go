// Package userspace is hike's userspace ESP data plane: IPsec tunnel mode
// over a TUN device, for hosts whose kernel has no ESP (CI's does not) or
// where the daemon should own every packet. It implements
// dataplane.Backend with package esp doing the cryptography.
//
// # Packet paths
//
// Outbound, the kernel routes traffic for the remote traffic selectors into
// the TUN device (the backend adds those routes when policies are
// installed). One goroutine reads the device, finds the policy of each
// packet by its addresses, protocol and ports, seals it with the newest
// outbound SA of that policy's Child SA and sends it: inside UDP through
// Config.SendESP (RFC 3948) when the SA is encapsulated, else on a raw IP
// protocol 50 socket.
//
// Inbound, the daemon's NAT-T socket calls HandleESP for every ESP-in-UDP
// packet, and the backend's raw sockets do the same for plain ESP. The SA
// is found by SPI, the packet authenticated, checked against the replay
// window and decrypted in place, and the inner packet must lie within the
// Child SA's traffic selectors (RFC 4301 §5.2) before it is written to the
// device.
//
// # Policy lookup
//
// Remote selectors are split into prefixes and filed in one hash map per
// address family; a lookup probes the prefix lengths in use, longest first.
// Among the policies filed under one prefix the most specific selector wins
// (narrower address range, then a named protocol, then narrower ports).
// Lookups cost a handful of map probes however many policies are installed.
//
// # Batching and offloads
//
// The TUN device is opened with a virtio-net header (IFF_VNET_HDR) and TCP
// segmentation and checksum offload (TUNSETOFFLOAD), so the kernel hands
// over TCP super-packets of up to 64 KiB with partial checksums; the reader
// cuts them into segments and finishes the checksums itself (offload.go).
// It takes up to 32 packets per wake-up and sends their UDP-encapsulated
// ESP packets with one Config.SendESPBatch call (sendmmsg). Decrypted
// packets go to the kernel one write each, marked as checksum-valid: ESP
// has authenticated them. With Config.CoalesceInbound, consecutive TCP
// segments of a connection are merged and written as one GSO packet when
// the caller ends its receive batch (EndBatch), the receive-side
// counterpart of the TSO handling (coalesce.go).
//
// # Concurrency and memory
//
// The device reader owns its buffers (32 of 64 KiB plus room for the ESP
// header and trailer), so sealing happens in place and the outbound path
// does not allocate. The inbound path decrypts in place in the caller's
// buffer and does not allocate either. Tables are guarded by one RWMutex
// that packet paths hold only for lookups; each SA's own mutex serialises
// Seal or Open as esp.SA requires. See Backend for the details.
//
// # Differences from the kernel data plane
//
// Close removes the TUN device, and with it every SA, policy and route: a
// userspace data plane cannot outlive its process. SetReplayState merges
// rather than overwrites, so it can only make the window stricter. A
// ReplayWindow of 0 gets esp.DefaultReplayWindow, since esp always checks
// replays, and other sizes are rounded up to a multiple of 64.
package userspace
