package idempotency

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const chargeBody = `{"amount": 1250, "currency": "EUR"}`

// TestConcurrentRequestsRunOnce: 50 identical requests with one key, sent
// at once, cause one charge row and one bank charge; every answer is the
// same 201 body or a 409; a later retry replays the body.
func TestConcurrentRequestsRunOnce(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	const n = 50
	replies := make([]reply, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = a.post("alice", "k-concurrent", chargeBody)
		})
	}
	close(start)
	wg.Wait()

	var created string
	conflicts := 0
	for _, r := range replies {
		switch r.status {
		case http.StatusCreated:
			if created != "" && r.body != created {
				t.Fatalf("two different 201 bodies:\n%s\n%s", created, r.body)
			}
			created = r.body
		case http.StatusConflict:
			if r.problemType() != TypeKeyInFlight || r.header.Get("Retry-After") == "" {
				t.Fatalf("409 without in-flight type or Retry-After: %v %s", r.header, r.body)
			}
			conflicts++
		default:
			t.Fatalf("unexpected answer %d: %s", r.status, r.body)
		}
	}
	if created == "" {
		t.Fatal("no request got 201")
	}
	if rows := a.count(`SELECT count(*) FROM charges`); rows != 1 {
		t.Fatalf("%d charge rows, want 1", rows)
	}
	if calls, charges := a.bank.counts(); calls != 1 || charges != 1 {
		t.Fatalf("bank saw %d calls and %d charges, want 1 and 1", calls, charges)
	}
	t.Logf("%d of %d got 409", conflicts, n)

	again := a.post("alice", "k-concurrent", chargeBody)
	if again.status != http.StatusCreated || again.body != created || again.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("replay: %d %q replayed=%q, want 201 %q replayed=true", again.status, again.body, again.header.Get(ReplayedHeader), created)
	}
	if again.header.Get("Location") == "" || again.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("replay lost allow-listed headers: %v", again.header)
	}
	if again.header.Get("X-Not-Replayed") != "" {
		t.Fatalf("replay carried a header outside the allow-list: %v", again.header)
	}
	if again.header.Get(ExpiresHeader) == "" {
		t.Fatal("replay does not advertise the key's expiry")
	}
	if got := a.counter("payonce.idempotency.requests", "outcome", "claimed"); got != 1 {
		t.Fatalf("claimed counter = %d, want 1", got)
	}
	if got := a.counter("payonce.idempotency.requests", "outcome", "replayed"); got < 1 {
		t.Fatalf("replayed counter = %d, want >= 1", got)
	}
}

// TestKeyReusedWithDifferentRequest: the same key with a changed value is
// refused with 422 and writes nothing; the same body with its keys in
// another order and other whitespace is the same request and is replayed.
func TestKeyReusedWithDifferentRequest(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	first := a.post("alice", "k1", chargeBody)
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	reordered := a.post("alice", "k1", "{\n\t\"currency\":\"EUR\",   \"amount\":1250}")
	if reordered.status != http.StatusCreated || reordered.body != first.body || reordered.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("reordered body: %d %s, want a replay of the first", reordered.status, reordered.body)
	}
	changed := a.post("alice", "k1", `{"amount": 1251, "currency": "EUR"}`)
	if changed.status != http.StatusUnprocessableEntity || changed.problemType() != TypeKeyReused {
		t.Fatalf("changed amount: %d %s, want 422 %s", changed.status, changed.body, TypeKeyReused)
	}
	if ct := changed.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("422 content type %q", ct)
	}
	if rows := a.count(`SELECT count(*) FROM charges WHERE amount <> 1250`); rows != 0 {
		t.Fatal("the refused request wrote a charge")
	}
	if calls, _ := a.bank.counts(); calls != 1 {
		t.Fatalf("bank calls = %d, want 1", calls)
	}
}

// TestKeyHeaderRules: missing, malformed and unauthenticated requests are
// refused with distinct problem types before anything runs.
func TestKeyHeaderRules(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	cases := []struct {
		name, caller, key string
		extra             []string
		status            int
		problem           string
	}{
		{"missing key", "alice", "-", nil, 400, TypeKeyMissing},
		{"empty key", "alice", "", nil, 400, TypeKeyInvalid},
		{"empty quoted key", "alice", `""`, nil, 400, TypeKeyInvalid},
		{"key of 256 bytes", "alice", strings.Repeat("k", 256), nil, 400, TypeKeyInvalid},
		{"tab in key", "alice", "ab\tcd", nil, 400, TypeKeyInvalid},
		{"non-ASCII key", "alice", "schlüssel", nil, 400, TypeKeyInvalid},
		{"unterminated quote", "alice", `"abc`, nil, 400, TypeKeyInvalid},
		{"two keys", "alice", "a", []string{Header, "b"}, 400, TypeKeyInvalid},
		{"no caller", "", "k", nil, 401, "unauthorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.post(c.caller, c.key, chargeBody, c.extra...)
			if r.status != c.status || r.problemType() != c.problem {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.problem)
			}
		})
	}
	if rows := a.count(`SELECT count(*) FROM idempotency_keys`) + a.count(`SELECT count(*) FROM charges`); rows != 0 {
		t.Fatalf("refused requests left %d rows", rows)
	}
	// The longest valid key, and the draft's quoted form of a key, are
	// accepted; quoted and bare spellings name the same key.
	long := strings.Repeat("k", MaxKeyLength)
	if r := a.post("alice", long, chargeBody); r.status != http.StatusCreated {
		t.Fatalf("255-byte key: %d %s", r.status, r.body)
	}
	quoted := a.post("alice", `"q-1"`, chargeBody)
	bare := a.post("alice", "q-1", chargeBody)
	if quoted.status != http.StatusCreated || bare.header.Get(ReplayedHeader) != "true" || bare.body != quoted.body {
		t.Fatalf("quoted then bare key: %d %s / %d %s", quoted.status, quoted.body, bare.status, bare.body)
	}
}

// TestKeysAreScopedToTheCaller: two callers using the same key string get
// two independent requests and each only ever sees its own answer.
func TestKeysAreScopedToTheCaller(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	alice := a.post("alice", "shared-key", `{"amount": 100, "currency": "EUR"}`)
	bob := a.post("bob", "shared-key", `{"amount": 999, "currency": "USD"}`)
	if alice.status != http.StatusCreated || bob.status != http.StatusCreated {
		t.Fatalf("alice %d %s, bob %d %s", alice.status, alice.body, bob.status, bob.body)
	}
	if bob.header.Get(ReplayedHeader) != "" || bob.charge(t).Amount != 999 {
		t.Fatalf("bob got alice's answer: %s", bob.body)
	}
	for _, c := range []struct {
		caller, body string
		want         reply
	}{
		{"alice", `{"amount": 100, "currency": "EUR"}`, alice},
		{"bob", `{"amount": 999, "currency": "USD"}`, bob},
	} {
		r := a.post(c.caller, "shared-key", c.body)
		if r.body != c.want.body || r.header.Get(ReplayedHeader) != "true" {
			t.Fatalf("%s's replay: %s, want %s", c.caller, r.body, c.want.body)
		}
	}
	// Bob sending Alice's exact body with the key is still Bob's request
	// under Bob's key: a mismatch with Bob's first request, not a replay
	// of Alice's.
	if r := a.post("bob", "shared-key", `{"amount": 100, "currency": "EUR"}`); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("bob with alice's body: %d %s, want 422", r.status, r.body)
	}
	if rows := a.count(`SELECT count(*) FROM charges`); rows != 2 {
		t.Fatalf("%d charges, want 2", rows)
	}
}

// TestInFlight: while the first request runs, a second with its key gets
// 409 with Retry-After; after it finishes, the retry gets the replay.
func TestInFlight(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	reached, release := make(chan struct{}), make(chan struct{})
	hook := func(*Key) { close(reached); <-release }
	a.afterBank.Store(&hook)
	first := make(chan reply)
	go func() { first <- a.post("alice", "k", chargeBody) }()
	<-reached
	second := a.post("alice", "k", chargeBody)
	if second.status != http.StatusConflict || second.problemType() != TypeKeyInFlight || second.header.Get("Retry-After") != "1" {
		t.Fatalf("second: %d %v %s, want 409 in flight with Retry-After: 1", second.status, second.header, second.body)
	}
	// A different request under the in-flight key is told it is a
	// different request, which is the more useful of the two answers.
	if r := a.post("alice", "k", `{"amount": 1, "currency": "EUR"}`); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("different body while in flight: %d %s", r.status, r.body)
	}
	close(release)
	got := <-first
	if got.status != http.StatusCreated {
		t.Fatalf("first: %d %s", got.status, got.body)
	}
	if r := a.post("alice", "k", chargeBody); r.body != got.body || r.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("retry after finish: %d %s", r.status, r.body)
	}
}

// TestWaitInFlight: with a bounded wait, a request that arrives while the
// first is running waits for it and gets its answer instead of a 409.
func TestWaitInFlight(t *testing.T) {
	a := newApp(t, Config{}, Options{WaitInFlight: 30e9})
	reached, release := make(chan struct{}), make(chan struct{})
	hook := func(*Key) { close(reached); <-release }
	a.afterBank.Store(&hook)
	waiting := make(chan struct{})
	var once sync.Once
	a.idem.onWait = func() { once.Do(func() { close(waiting) }) }

	first := make(chan reply)
	go func() { first <- a.post("alice", "k", chargeBody) }()
	<-reached
	second := make(chan reply)
	go func() { second <- a.post("alice", "k", chargeBody) }()
	<-waiting // the second request saw the key in flight and is waiting
	close(release)
	f, s := <-first, <-second
	if f.status != http.StatusCreated || s.status != http.StatusCreated || s.body != f.body || s.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("first %d %s; second %d %s replayed=%q", f.status, f.body, s.status, s.body, s.header.Get(ReplayedHeader))
	}
}

// TestRequestsWithoutKeys: safe methods pass through untouched; the
// middleware only guards requests with effects.
func TestRequestsWithoutKeys(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	seen := 0
	h := a.idem.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen++
		if FromContext(r.Context()) != nil {
			t.Error("a GET got a key")
		}
	}))
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		req, _ := http.NewRequest(m, "/x", nil)
		h.ServeHTTP(discard{}, req)
	}
	if seen != 3 {
		t.Fatalf("handler ran %d times, want 3", seen)
	}
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// TestDefaultProblemWriter: without an application encoder the middleware
// still answers RFC 9457 problem+json with the problem's status, type and
// Retry-After, and an unknown error as a 500 that does not leak its text.
func TestDefaultProblemWriter(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteProblem(t.Context(), errInFlight(2), rec)
	if rec.Code != http.StatusConflict || rec.Header().Get("Retry-After") != "2" ||
		rec.Header().Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(rec.Body.String(), `"type":"`+TypeKeyInFlight+`"`) {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	WriteProblem(t.Context(), errors.New("secret internals"), rec)
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
