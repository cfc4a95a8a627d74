package idempotency

import (
	"net/http"
	"strings"
)

// Header names this package reads and writes.
const (
	// Header carries the client's key on the request.
	Header = "Idempotency-Key"
	// ReplayedHeader is "true" on a response replayed from the store.
	ReplayedHeader = "Idempotent-Replayed"
	// ExpiresHeader tells the client, as an HTTP date, until when its key is
	// kept: a retry up to then gets the same answer; a retry after it is
	// refused with TypeKeyExpired.
	ExpiresHeader = "Idempotency-Key-Expires"
)

// MaxKeyLength is the longest key accepted, in bytes. A UUID needs 36; the
// limit keeps the primary key index small and stops keys used as payloads.
const MaxKeyLength = 255

// ParseKey extracts the key from a request's headers. ok is false when
// there is no Idempotency-Key header at all. The IETF draft defines the
// value as a Structured Field string ("quoted"), while Stripe and most
// clients send it bare; both are accepted and mean the same key, so
// `"abc"` and `abc` collide as a client would expect.
func ParseKey(h http.Header) (key string, ok bool, err error) {
	values := h.Values(Header)
	if len(values) == 0 {
		return "", false, nil
	}
	if len(values) > 1 {
		return "", true, errInvalid("send exactly one Idempotency-Key header")
	}
	raw := strings.TrimSpace(values[0])
	if strings.HasPrefix(raw, `"`) {
		if raw, err = unquoteSFString(raw); err != nil {
			return "", true, err
		}
	}
	switch {
	case raw == "":
		return "", true, errInvalid("it is empty")
	case len(raw) > MaxKeyLength:
		return "", true, errInvalid("it is longer than 255 characters")
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] < 0x20 || raw[i] > 0x7e {
			return "", true, errInvalid("it may contain only printable ASCII characters")
		}
	}
	return raw, true, nil
}

// unquoteSFString decodes an RFC 8941 sf-string: DQUOTE, printable ASCII
// with \" and \\ as the only escapes, DQUOTE.
func unquoteSFString(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != '"' {
		return "", errInvalid("a quoted key must end with a double quote")
	}
	var b strings.Builder
	inner := s[1 : len(s)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\':
			i++
			if i == len(inner) || (inner[i] != '"' && inner[i] != '\\') {
				return "", errInvalid(`in a quoted key a backslash may only escape " or \`)
			}
			b.WriteByte(inner[i])
		case c == '"':
			return "", errInvalid("a quoted key has an unescaped double quote inside")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
