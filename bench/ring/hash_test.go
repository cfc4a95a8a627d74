package main

import (
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/payonce/payonce/pkg/ring"
)

// TestHashMatchesXXH64 cross-checks payonce's own XXH64 against the
// cespare/xxhash module on many lengths, so the hand-written hash cannot
// drift from the specification it claims.
func TestHashMatchesXXH64(t *testing.T) {
	keys, _ := randomKeys(1000)
	buf := []byte{}
	for i := range 300 {
		buf = append(buf, byte(i*7+3))
		keys = append(keys, string(buf))
	}
	for _, k := range keys {
		if got, want := ring.Hash(k), xxhash.Sum64String(k); got != want {
			t.Fatalf("ring.Hash(%q) = %#x, xxhash = %#x", k, got, want)
		}
	}
}

var hashSink uint64

func BenchmarkHash(b *testing.B) {
	keys, _ := randomKeys(1 << 12)
	b.Run("payonce", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			hashSink = ring.Hash(keys[i&4095])
		}
	})
	b.Run("cespare", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			hashSink = xxhash.Sum64String(keys[i&4095])
		}
	})
}
