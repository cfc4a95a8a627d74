// Package cursor encodes keyset-pagination cursors: the (created_at, id)
// of the last item of a page, opaque to clients. Keyset pagination stays
// fast at any depth and never skips or repeats an item when new ones are
// added between two page requests, unlike OFFSET.
//
// A cursor is tamper-evident and bound to the list it came from: it
// carries an HMAC over its position and its scope (the caller and the
// customer of the list). A client cannot forge a position, and a cursor
// from one caller's or customer's list is refused on another's (400), so a
// cursor is never a way to probe someone else's list.
package cursor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/errs"
)

// Codec issues and checks cursors under one key (derived from the
// services' INTERNAL_SECRET).
type Codec struct{ key []byte }

// NewCodec returns a codec on key.
func NewCodec(key []byte) Codec { return Codec{key: key} }

// Scope names the list a cursor belongs to: the caller and the customer.
func Scope(caller, customerID string) string { return caller + "\x00" + customerID }

// macLen is how many bytes of the HMAC a cursor carries: 128 bits are far
// beyond guessing, and keep cursors short.
const macLen = 16

func (c Codec) mac(scope string, payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:macLen]
}

// Encode returns the cursor of list scope that resumes after (t, id).
func (c Codec) Encode(scope string, t time.Time, id string) string {
	payload := []byte(strconv.FormatInt(t.UnixMicro(), 10) + "|" + id)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(c.mac(scope, payload))
}

// Decode returns the position a cursor of list scope names, or nils for ""
// (the first page). A cursor this service did not issue for this list
// (forged, altered, or another caller's or customer's) is an Invalid error.
func (c Codec) Decode(scope, cursor string) (*time.Time, *string, error) {
	if cursor == "" {
		return nil, nil, nil
	}
	bad := errs.E(errs.Invalid, "cursor is not one this service issued for this list").
		WithFields(errs.FieldError{Field: "cursor", Reason: "use next_cursor from the previous page of the same list"})
	enc, sig, ok := strings.Cut(cursor, ".")
	if !ok {
		return nil, nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, nil, bad
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, c.mac(scope, raw)) {
		return nil, nil, bad
	}
	micros, id, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(micros, 10, 64)
	if !ok || err != nil || !IsUUID(id) {
		return nil, nil, bad
	}
	t := time.UnixMicro(n).UTC()
	return &t, &id, nil
}

// IsUUID reports whether s is a UUID in its canonical 36-character form,
// the only form payonce issues; checking it first turns a malformed id into
// a clean 404 instead of a database type error.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// Collect reads one page from rows, which must hold up to limit+1 items
// ordered by (created_at, id) descending: it returns at most limit items
// and, when the extra row shows there is more, the cursor of the last one.
// scan reads one item; key gives its (created_at, id); next encodes the
// cursor (Codec.Encode for the list's scope).
func Collect[T any](rows pgx.Rows, limit int, scan func(pgx.Row) (T, error), key func(T) (time.Time, string), next func(time.Time, string) string) ([]T, string, error) {
	defer rows.Close()
	items := []T{}
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, next(key(items[limit-1])), nil
}
