package idempotency

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/url"
	"unicode/utf8"
)

// Fingerprint identifies what a request asks for, so that a key reused for a
// different request is caught (422) instead of replaying an answer to a
// question the client did not ask.
type Fingerprint [sha256.Size]byte

// FingerprintOf hashes the method, the concrete target path (with its
// parameter values: /v1/orders/A/cancel and /v1/orders/B/cancel are two
// requests), the query and the body. A body that is
// JSON is hashed in canonical form: object keys sorted, insignificant
// whitespace removed, strings re-escaped one way. So a client library that
// reorders keys on a retry still matches, while any changed value, even
// 100 versus 100.0, does not. A body that is not valid JSON (or not valid
// UTF-8) is hashed byte for byte.
func FingerprintOf(method, path string, query url.Values, body []byte) Fingerprint {
	h := sha256.New()
	field := func(kind byte, b []byte) {
		var n [9]byte
		n[0] = kind
		binary.BigEndian.PutUint64(n[1:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	// Length-prefixed fields: no choice of method, path or body can make
	// two different requests hash the same bytes. v2: the path is the
	// concrete one (v1 hashed the route pattern).
	field('v', []byte("payonce-idempotency-v2"))
	field('m', []byte(method))
	field('p', []byte(path))
	field('q', []byte(query.Encode())) // Encode sorts by key
	if canon, err := CanonicalJSON(body); err == nil {
		field('j', canon)
	} else {
		field('b', body)
	}
	var fp Fingerprint
	h.Sum(fp[:0])
	return fp
}

// CanonicalJSON returns the canonical form of one JSON value: object keys
// sorted, no insignificant whitespace, numbers exactly as written. It fails
// on anything that is not exactly one valid JSON value in valid UTF-8; the
// UTF-8 check matters because Go's decoder would otherwise map different
// invalid bytes to the same U+FFFD and hide a changed value.
func CanonicalJSON(body []byte) ([]byte, error) {
	if !utf8.Valid(body) {
		return nil, errNotCanonical
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotCanonical
	}
	// encoding/json writes map keys sorted and without whitespace, and a
	// json.Number verbatim: exactly the canonical form.
	return json.Marshal(v)
}

var errNotCanonical = errorString("not exactly one JSON value in valid UTF-8")

type errorString string

func (e errorString) Error() string { return string(e) }
