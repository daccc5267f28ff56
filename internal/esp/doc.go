// Package esp implements the IPsec Encapsulating Security Payload (RFC 4303)
// in user space: sealing inner packets into ESP packets and opening them
// again, with sequence numbers, Extended Sequence Numbers (ESN) and an
// anti-replay window. It knows nothing about sockets or TUN devices; the data
// plane hands it byte slices and writes the results wherever they belong
// (raw ESP, or UDP-encapsulated per RFC 3948, which prefixes nothing to the
// ESP packet itself).
//
// # Algorithms
//
// Algorithms are named by their IKEv2 transform IDs (RFC 7296 §3.3.2, IANA
// "IKEv2 Transform Type 1/3" registries), so a negotiated proposal maps onto
// a [Config] without a translation table:
//
//   - AES-GCM with a 16-octet ICV (RFC 4106), 128/192/256-bit keys;
//   - ChaCha20-Poly1305 (RFC 7634);
//   - AES-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2-256-128,
//     -384-192, -512-256 (RFC 4868).
//
// For the AEADs the explicit 8-octet IV is the 64-bit sequence number. The
// sequence number never repeats within an SA, including across an RFC 6311
// failover (the new owner starts at a reserved high-water mark), so neither
// does the nonce; no IV state has to be replicated. AES-CBC uses a fresh
// random IV from crypto/rand for every packet, as RFC 3602 §2 requires.
//
// # Counters and RFC 6311
//
// The counters are first-class because a cluster member that takes over an SA
// must continue it without reusing outbound sequence numbers and without
// accepting packets the failed member already accepted. [SA.OutboundSeq],
// [SA.SetOutboundSeq] and [SA.AdvanceOutboundSeq] read and move the outbound
// counter (never backwards); [SA.ReplayState], [SA.SetReplayState] and
// [SA.AdvanceReplayWindow] read and move the inbound window (never making a
// rejected sequence number acceptable again). A move that would need the
// 32-bit sequence space of a non-ESN SA to cycle fails with [ErrSeqExhausted]:
// the SA has to be rekeyed instead.
//
// # Concurrency
//
// hike runs a small number of data-plane workers, each owning a shard of SAs
// (no goroutine per SA). The SA is built for that model:
//
//   - Seal must not run concurrently with another Seal on the same SA, and
//     Open not with another Open. Both keep per-SA scratch state (the CBC
//     mode and HMAC instances and the nonce/AAD buffers) so that the hot path
//     does not allocate; a second worker would need its own SA state anyway
//     to be fast, and sharding by SPI gives every SA exactly one worker.
//   - Everything else — the counter reads and moves, [SA.Stats] — may run
//     concurrently with Seal or Open from any goroutine. The control plane
//     performs RFC 6311 synchronisation and cluster snapshots while traffic
//     keeps flowing. The outbound counter is an atomic (compare-and-swap, so
//     it can never wrap or move backwards under a race); the replay window is
//     guarded by a small mutex that Open holds only for the replay check and
//     for the final window update, never while decrypting.
package esp
