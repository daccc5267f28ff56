package esp_test

import (
	"fmt"

	"github.com/hike-vpn/hike/internal/esp"
)

// A cluster member takes over an inbound and an outbound Child SA after a
// failover (RFC 6311 §5.2): it restores the replicated state, jumps its own
// outbound counter to the reserved high-water mark and advances the inbound
// window by the delta it will send the peer in IPSEC_REPLAY_COUNTER_SYNC.
func Example_takeover() {
	keymat := make([]byte, 36) // AES-256 key | salt, from the replicated KEYMAT
	out, err := esp.NewSA(esp.Config{SPI: 0x11223344, Direction: esp.Outbound,
		Encr: esp.EncrAESGCM16, EncrKey: keymat, ESN: true})
	if err != nil {
		panic(err)
	}
	in, err := esp.NewSA(esp.Config{SPI: 0x55667788, Direction: esp.Inbound,
		Encr: esp.EncrAESGCM16, EncrKey: keymat, ESN: true})
	if err != nil {
		panic(err)
	}

	const reservedMark = 3 << 20 // replicated before the failed member used it
	if err := out.SetOutboundSeq(reservedMark); err != nil {
		panic(err)
	}
	replicated := esp.ReplayState{Top: 1000} // stale copy of the peer's window
	const delta = 1 << 20
	if err := in.SetReplayState(replicated); err != nil {
		panic(err)
	}
	if err := in.AdvanceReplayWindow(delta); err != nil {
		panic(err)
	}

	pkt, err := out.Seal(nil, []byte("inner IPv4 packet"), 4)
	if err != nil {
		panic(err)
	}
	fmt.Println("last outbound sequence number:", out.OutboundSeq())
	fmt.Println("ESP packet length:", len(pkt)) // 8 SPI+seq, 8 IV, 17+2 padded to 20, 16 ICV
	fmt.Println("inbound window top:", in.ReplayState().Top)
	// Output:
	// last outbound sequence number: 3145729
	// ESP packet length: 52
	// inbound window top: 1049576
}
