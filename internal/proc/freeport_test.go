package proc

import (
	"fmt"
	"net"
	"testing"
)

// A port handed to a child must stay out of the ephemeral range (where
// outgoing connections would take it before the child binds) and must never
// be handed out twice by one process.
func TestFreePortIsOutsideTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < freePortLow || p >= freePortHigh {
			t.Fatalf("port %d outside [%d, %d)", p, freePortLow, freePortHigh)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d from FreePort cannot be bound: %v", p, err)
		}
		ln.Close()
	}
}
