package cursor

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 25, 18, 0, 0, 123456000, time.UTC)
	id := "3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21"
	gotT, gotID, err := Decode(Encode(at, id))
	if err != nil || !gotT.Equal(at) || *gotID != id {
		t.Fatalf("round trip: %v %v %v", gotT, gotID, err)
	}
	if a, b, err := Decode(""); a != nil || b != nil || err != nil {
		t.Fatal("empty cursor is the first page")
	}
	for _, bad := range []string{"garbage!", Encode(at, "not-a-uuid"), "MTIz"} {
		if _, _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("")
	f.Add(Encode(time.Unix(0, 0), "3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21"))
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, c string) {
		ts, id, err := Decode(c)
		if err == nil && c != "" && (ts == nil || id == nil || !IsUUID(*id)) {
			t.Fatalf("accepted %q without a position", c)
		}
	})
}
