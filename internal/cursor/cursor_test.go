package cursor

import (
	"strings"
	"testing"
	"time"
)

var testCodec = NewCodec([]byte("test-cursor-key"))

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 25, 18, 0, 0, 123456000, time.UTC)
	id := "3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21"
	scope := Scope("shop", "alice")
	gotT, gotID, err := testCodec.Decode(scope, testCodec.Encode(scope, at, id))
	if err != nil || !gotT.Equal(at) || *gotID != id {
		t.Fatalf("round trip: %v %v %v", gotT, gotID, err)
	}
	if a, b, err := testCodec.Decode(scope, ""); a != nil || b != nil || err != nil {
		t.Fatal("empty cursor is the first page")
	}
	good := testCodec.Encode(scope, at, id)
	enc, sig, _ := strings.Cut(good, ".")
	forged := []string{
		"garbage!", "MTIz", enc, // no MAC at all: the old, unsigned format
		testCodec.Encode(scope, at, "not-a-uuid"),
		enc + "." + strings.Repeat("A", len(sig)),                                    // a made-up MAC
		NewCodec([]byte("another key")).Encode(scope, at, id),                        // another service's key
		testCodec.Encode(Scope("other", "alice"), at, id),                            // another caller's list
		testCodec.Encode(Scope("shop", "bob"), at, id),                               // another customer's list
		testCodec.Encode(scope, at.Add(time.Microsecond), id)[:len(enc)] + "." + sig, // position altered
	}
	for _, bad := range forged {
		if _, _, err := testCodec.Decode(scope, bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

// FuzzDecode: no cursor the fuzzer makes up is accepted (it cannot know
// the key), and decoding never panics.
func FuzzDecode(f *testing.F) {
	scope := Scope("shop", "alice")
	f.Add("")
	f.Add(testCodec.Encode(scope, time.Unix(0, 0), "3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21"))
	f.Add("%%%")
	f.Add("MTIz.AAAA")
	issued := map[string]bool{testCodec.Encode(scope, time.Unix(0, 0), "3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21"): true}
	f.Fuzz(func(t *testing.T, c string) {
		ts, id, err := testCodec.Decode(scope, c)
		if err != nil || c == "" {
			return
		}
		if ts == nil || id == nil || !IsUUID(*id) {
			t.Fatalf("accepted %q without a position", c)
		}
		if !issued[c] && testCodec.Encode(scope, *ts, *id) != c {
			t.Fatalf("accepted %q, which was not issued", c)
		}
	})
}
