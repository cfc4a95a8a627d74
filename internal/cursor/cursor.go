// Package cursor encodes keyset-pagination cursors: the (created_at, id)
// of the last item of a page, opaque to clients. Keyset pagination stays
// fast at any depth and never skips or repeats an item when new ones are
// added between two page requests, unlike OFFSET.
package cursor

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/errs"
)

// Encode returns the cursor that resumes after the item (t, id).
func Encode(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + "|" + id))
}

// Decode returns the position a cursor names, or nils for "" (the first
// page). A cursor this service did not issue is an Invalid error.
func Decode(c string) (*time.Time, *string, error) {
	if c == "" {
		return nil, nil, nil
	}
	bad := errs.E(errs.Invalid, "cursor is not one this service issued").
		WithFields(errs.FieldError{Field: "cursor", Reason: "use next_cursor from the previous page"})
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
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
// scan reads one item; key gives its (created_at, id).
func Collect[T any](rows pgx.Rows, limit int, scan func(pgx.Row) (T, error), key func(T) (time.Time, string)) ([]T, string, error) {
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
	return items, Encode(key(items[limit-1])), nil
}
