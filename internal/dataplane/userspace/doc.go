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
// # Concurrency and memory
//
// The device reader owns a single buffer with room before and after the
// packet, so sealing happens in place and the outbound path does not
// allocate. The inbound path decrypts into the caller's buffer and does not
// allocate either. Tables are guarded by one RWMutex that packet paths hold
// only for lookups; each SA's own mutex serialises Seal or Open as esp.SA
// requires. See Backend for the details.
package userspace
