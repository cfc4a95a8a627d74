package idempotency

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// jsonValue generates arbitrary JSON values, nested a few levels deep.
func jsonValue(depth int) *rapid.Generator[any] {
	leaf := rapid.OneOf(
		rapid.Just[any](nil),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Map(rapid.Int64(), func(n int64) any { return json.Number(fmt.Sprint(n)) }),
		rapid.Map(rapid.Float64Range(-1e6, 1e6), func(f float64) any { return json.Number(fmt.Sprint(f)) }),
		rapid.Map(rapid.String(), func(s string) any { return s }),
	)
	if depth == 0 {
		return leaf
	}
	return rapid.OneOf(leaf,
		rapid.Map(rapid.SliceOfN(jsonValue(depth-1), 0, 4), func(v []any) any { return v }),
		rapid.Map(rapid.MapOfN(rapid.StringN(0, 6, -1), jsonValue(depth-1), 0, 4), func(v map[string]any) any { return v }),
	)
}

// spell writes v as JSON with object keys in a random order and random
// insignificant whitespace: the same value as a different client would
// send it.
func spell(t *rapid.T, v any) string {
	ws := func() string {
		return rapid.SampledFrom([]string{"", " ", "\n", "\t ", "\r\n  "}).Draw(t, "ws")
	}
	var b strings.Builder
	var write func(any)
	write = func(v any) {
		b.WriteString(ws())
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			keys = rapid.Permutation(keys).Draw(t, "order")
			b.WriteString("{")
			for i, k := range keys {
				if i > 0 {
					b.WriteString(ws() + ",")
				}
				kb, _ := json.Marshal(k)
				b.WriteString(ws() + string(kb) + ws() + ":")
				write(v[k])
			}
			b.WriteString(ws() + "}")
		case []any:
			b.WriteString("[")
			for i, e := range v {
				if i > 0 {
					b.WriteString(",")
				}
				write(e)
			}
			b.WriteString(ws() + "]")
		default:
			enc, _ := json.Marshal(v)
			b.Write(enc)
		}
		b.WriteString(ws())
	}
	write(v)
	return b.String()
}

// mutate returns v with exactly one scalar changed (or an element added to
// an empty container).
func mutate(t *rapid.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		c := make(map[string]any, len(v)+1)
		for k, e := range v {
			c[k] = e
		}
		if len(keys) == 0 {
			c["added"] = true
			return c
		}
		k := rapid.SampledFrom(keys).Draw(t, "key")
		c[k] = mutate(t, v[k])
		return c
	case []any:
		if len(v) == 0 {
			return []any{nil}
		}
		c := append([]any(nil), v...)
		i := rapid.IntRange(0, len(v)-1).Draw(t, "index")
		c[i] = mutate(t, v[i])
		return c
	case nil:
		return false
	case bool:
		return !v
	case json.Number:
		if v == "0" || v == "-0" {
			return json.Number("1")
		}
		return json.Number(string(v) + "1") // "12" -> "121", "1.5" -> "1.51", "1e-05" -> "1e-051"
	case string:
		return v + "x"
	}
	t.Fatalf("unexpected %T", v)
	return nil
}

// TestFingerprintProperties: the fingerprint does not change with key
// order or whitespace, and does change when any value changes.
func TestFingerprintProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := jsonValue(3).Draw(t, "value")
		a, b := spell(t, v), spell(t, v)
		fa := FingerprintOf("POST", "POST /v1/x", nil, []byte(a))
		if fb := FingerprintOf("POST", "POST /v1/x", nil, []byte(b)); fa != fb {
			t.Fatalf("same value, different fingerprints:\n%s\n%s", a, b)
		}
		changed := spell(t, mutate(t, v))
		for _, body := range []string{a, b, changed} {
			// Every spelling must take the canonical path; a fallback to
			// raw bytes would make the property hold for the wrong reason.
			if _, err := CanonicalJSON([]byte(body)); err != nil {
				t.Fatalf("generated body %q is not canonicalisable: %v", body, err)
			}
		}
		if fc := FingerprintOf("POST", "POST /v1/x", nil, []byte(changed)); fc == fa {
			t.Fatalf("changed value, same fingerprint:\n%s\n%s", a, changed)
		}
	})
}

// TestFingerprintCoversRequest: method, route and query count, and bodies
// that are not JSON are compared byte for byte.
func TestFingerprintCoversRequest(t *testing.T) {
	base := FingerprintOf("POST", "POST /v1/x", url.Values{"a": {"1"}}, []byte(`{"a":1}`))
	others := map[string]Fingerprint{
		"method":          FingerprintOf("PATCH", "POST /v1/x", url.Values{"a": {"1"}}, []byte(`{"a":1}`)),
		"route":           FingerprintOf("POST", "POST /v1/y", url.Values{"a": {"1"}}, []byte(`{"a":1}`)),
		"query":           FingerprintOf("POST", "POST /v1/x", url.Values{"a": {"2"}}, []byte(`{"a":1}`)),
		"number spelling": FingerprintOf("POST", "POST /v1/x", url.Values{"a": {"1"}}, []byte(`{"a":1.0}`)),
		"raw body":        FingerprintOf("POST", "POST /v1/x", url.Values{"a": {"1"}}, []byte(`{"a":1`)),
	}
	for name, fp := range others {
		if fp == base {
			t.Errorf("changing the %s does not change the fingerprint", name)
		}
	}
	// Different invalid UTF-8 must not collapse into one U+FFFD.
	if FingerprintOf("POST", "r", nil, []byte("\"\xff\"")) == FingerprintOf("POST", "r", nil, []byte("\"\xfe\"")) {
		t.Error("invalid UTF-8 bytes collide")
	}
	// Strings spelled with escapes are the same value.
	if FingerprintOf("POST", "r", nil, []byte(`{"a":"\u0041"}`)) != FingerprintOf("POST", "r", nil, []byte(`{"a":"A"}`)) {
		t.Error("an escaped and a plain spelling of one string differ")
	}
}

// TestParseKey covers the header grammar: bare or sf-string quoted.
func TestParseKey(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"abc", "abc", true},
		{`"abc"`, "abc", true},
		{`"a\"b\\c"`, `a"b\c`, true},
		{"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324", true},
		{`"a\b"`, "", false},
		{`"a"b"`, "", false},
		{"\x7f", "", false},
		{strings.Repeat("x", 256), "", false},
	} {
		h := http.Header{}
		h.Set(Header, c.in)
		got, present, err := ParseKey(h)
		if !present || (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseKey(%q) = %q, %v, %v", c.in, got, present, err)
		}
	}
	if _, present, err := ParseKey(http.Header{}); present || err != nil {
		t.Error("absent header reported present")
	}
}

// FuzzRequest feeds arbitrary keys and bodies to the decoders of outside
// input: none may panic, a key accepted obeys the rules, and canonical
// JSON is a fixed point of itself.
func FuzzRequest(f *testing.F) {
	f.Add("k", []byte(`{"amount": 1250, "currency": "EUR"}`))
	f.Add(`"quoted\"key"`, []byte(`[1, 2.5e10, "x", null, true, {"a": {}}]`))
	f.Add("", []byte(``))
	f.Add("\xff", []byte("\"\xff\""))
	f.Add(strings.Repeat("k", 300), []byte(`{"a":1}{"b":2}`))
	f.Add(`"`, []byte(strings.Repeat("[", 20000)))
	f.Fuzz(func(t *testing.T, key string, body []byte) {
		h := http.Header{}
		h[Header] = []string{key}
		if k, _, err := ParseKey(h); err == nil {
			if k == "" || len(k) > MaxKeyLength {
				t.Fatalf("accepted key %q", k)
			}
			for i := 0; i < len(k); i++ {
				if k[i] < 0x20 || k[i] > 0x7e {
					t.Fatalf("accepted key %q with byte %#x", k, k[i])
				}
			}
		}
		_ = FingerprintOf("POST", key, url.Values{key: {string(body)}}, body)
		if canon, err := CanonicalJSON(body); err == nil {
			again, err := CanonicalJSON(canon)
			if err != nil || !bytes.Equal(again, canon) {
				t.Fatalf("canonical form is not stable: %q -> %q (%v)", canon, again, err)
			}
		}
	})
}
