package cursor_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/cursor"
	"github.com/payonce/payonce/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type item struct {
	at time.Time
	id string
}

func scanItem(row pgx.Row) (item, error) {
	var it item
	err := row.Scan(&it.at, &it.id)
	return it, err
}

func itemKey(it item) (time.Time, string) { return it.at, it.id }

// TestCollectPagesThroughKeysetQueries walks five rows two at a time with
// the query shape the stores use, and sees each row once, in order.
func TestCollectPagesThroughKeysetQueries(t *testing.T) {
	pool, _ := testenv.NewPool(t)
	codec, scope := cursor.NewCodec([]byte("k")), cursor.Scope("shop", "alice")
	encode := func(at time.Time, id string) string { return codec.Encode(scope, at, id) }
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE items (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), created_at timestamptz NOT NULL);
		INSERT INTO items (created_at) SELECT now() - g * interval '1 second' FROM generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	page := func(c string, limit int) ([]item, string) {
		t.Helper()
		after, afterID, err := codec.Decode(scope, c)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(ctx, `SELECT created_at, id::text FROM items
			WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::uuid))
			ORDER BY created_at DESC, id DESC LIMIT $3`, after, afterID, limit+1)
		if err != nil {
			t.Fatal(err)
		}
		items, next, err := cursor.Collect(rows, limit, scanItem, itemKey, encode)
		if err != nil {
			t.Fatal(err)
		}
		return items, next
	}
	var seen []item
	next := ""
	for i := 0; ; i++ {
		items, n := page(next, 2)
		seen = append(seen, items...)
		if n == "" {
			break
		}
		if i > 5 {
			t.Fatal("pagination does not end")
		}
		next = n
	}
	if len(seen) != 5 {
		t.Fatalf("saw %d rows, want 5", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if !seen[i].at.Before(seen[i-1].at) {
			t.Fatalf("row %d is not older than row %d", i, i-1)
		}
	}
	// A page that holds everything has no next cursor and is not nil.
	if items, n := page("", 5); len(items) != 5 || n != "" {
		t.Fatalf("full page: %d items, next %q", len(items), n)
	}
	if items, n := page(encode(seen[4].at, seen[4].id), 5); items == nil || len(items) != 0 || n != "" {
		t.Fatalf("past the end: %v, next %q", items, n)
	}
	// A row that does not scan is an error, not a short page.
	rows, err := pool.Query(ctx, `SELECT 'not a time', 'x'`)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cursor.Collect(rows, 5, scanItem, itemKey, encode); err == nil {
		t.Fatal("a bad row was accepted")
	}
}
