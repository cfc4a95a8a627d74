package ring

import "math/bits"

// HashVersion names the placement scheme: how a key becomes a slot and how
// slots are handed to members. Every party that must agree on owners has to
// run the same scheme, so the number travels inside every Snapshot and its
// binary encoding, and Decode refuses a table made under another scheme.
//
// Version 1 is:
//   - a key's hash is XXH64 of its bytes with seed 0 (Hash);
//   - its slot is the hash's low bits: Hash(key) & (SlotCount-1);
//   - a table has a power-of-two number of slots, at least 128 per member
//     (minimum 1024) when built, and grows by doubling, never shrinking, in
//     Rebalance;
//   - slots are handed out and given up in descending order of
//     slotPriority (the SplitMix64 finaliser of the slot index), and ties
//     between members break by byte order of their names.
//
// Changing any of these silently remaps keys, so any such change must bump
// this constant.
const HashVersion = 1

const (
	prime1 uint64 = 11400714785074694791
	prime2 uint64 = 14029467366897019727
	prime3 uint64 = 1609587929392839161
	prime4 uint64 = 9650029242287828579
	prime5 uint64 = 2870177450012600261
)

// Hash returns the 64-bit XXH64 hash (seed 0) of key, the hash that
// HashVersion 1 places keys with. It is implemented here, rather than
// imported, so that the package has no dependencies and the scheme cannot
// change under it through a module upgrade; its output matches the reference
// XXH64 test vectors (see hash_test.go).
func Hash(key string) uint64 {
	return xxh64(key)
}

// xxh64 serves both Hash and the fingerprint of a table, which is hashed as
// bytes without copying it into a string first.
func xxh64[Bytes string | []byte](key Bytes) uint64 {
	n := len(key)
	var h uint64
	i := 0
	if n >= 32 {
		// The seed-0 starting state; written with a variable because the
		// constant expressions overflow uint64 at compile time.
		v1, v2, v3, v4 := uint64(prime1), uint64(prime2), uint64(0), uint64(0)
		v1 += prime2
		v4 -= prime1
		for ; n-i >= 32; i += 32 {
			v1 = round(v1, load64(key, i))
			v2 = round(v2, load64(key, i+8))
			v3 = round(v3, load64(key, i+16))
			v4 = round(v4, load64(key, i+24))
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) +
			bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		h = mergeRound(h, v1)
		h = mergeRound(h, v2)
		h = mergeRound(h, v3)
		h = mergeRound(h, v4)
	} else {
		h = prime5
	}
	h += uint64(n)
	for ; n-i >= 8; i += 8 {
		h ^= round(0, load64(key, i))
		h = bits.RotateLeft64(h, 27)*prime1 + prime4
	}
	if n-i >= 4 {
		h ^= uint64(load32(key, i)) * prime1
		h = bits.RotateLeft64(h, 23)*prime2 + prime3
		i += 4
	}
	for ; i < n; i++ {
		h ^= uint64(key[i]) * prime5
		h = bits.RotateLeft64(h, 11) * prime1
	}
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

func round(acc, input uint64) uint64 {
	acc += input * prime2
	acc = bits.RotateLeft64(acc, 31)
	return acc * prime1
}

func mergeRound(acc, val uint64) uint64 {
	acc ^= round(0, val)
	return acc*prime1 + prime4
}

// load64 reads 8 little-endian bytes of s at i; the compiler merges the
// byte loads into one.
func load64[Bytes string | []byte](s Bytes, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func load32[Bytes string | []byte](s Bytes, i int) uint32 {
	s = s[i : i+4]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// slotPriority orders slots when a member hands slots over or an orphaned
// slot is dealt out. It is a bijection on uint64 (the SplitMix64 finaliser),
// so no two slots tie, and it scatters a member's donated slots across the
// table instead of taking them from one end, which keeps neighbouring slots
// owned by unrelated members (Successors walks neighbours).
func slotPriority(slot uint32) uint64 {
	x := uint64(slot) + 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
