package ring

import "testing"

// The reference XXH64 vectors (seed 0). If Hash ever disagrees with them,
// every key in every deployed ring lands somewhere else.
func TestHashMatchesXXH64Vectors(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  uint64
	}{
		{"", 0xef46db3751d8e999},
		{"a", 0xd24ec4f1a98c6e5b},
		{"as", 0x1c330fb2d66be179},
		{"asd", 0x631c37ce72a97393},
		{"asdf", 0x415872f599cea71e},
		{"Call me Ishmael. Some years ago--never mind how long precisely-", 0x02a2e85470d6fd96},
	} {
		if got := Hash(tc.input); got != tc.want {
			t.Errorf("Hash(%q) = %#x, want %#x", tc.input, got, tc.want)
		}
	}
}

// Slot priority is part of HashVersion 1 (slot 0 gives SplitMix64's well-known
// first output for seed 0): pin a few values so an edit that
// changes it fails here instead of remapping slots in production.
func TestSlotPriorityIsPinned(t *testing.T) {
	for _, tc := range []struct {
		slot uint32
		want uint64
	}{
		{0, 0xe220a8397b1dcdaf},
		{1, 0x910a2dec89025cc1},
		{1023, 0xc99070d0b823c1bf},
	} {
		if got := slotPriority(tc.slot); got != tc.want {
			t.Errorf("slotPriority(%d) = %#x, want %#x", tc.slot, got, tc.want)
		}
	}
}
