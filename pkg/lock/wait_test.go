package lock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

// abandoning is an HTTP transport whose first acquire attempt hangs until
// the test abandons it, the way a client whose per-attempt timeout fired
// gives up on a request the coordinator is still serving; the client then
// retries. It records the request id the attempts carry.
type abandoning struct {
	mu        sync.Mutex
	attempts  int
	requestID string
	abandon   chan struct{}
}

func (a *abandoning) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/leases") {
		return http.DefaultTransport.RoundTrip(r)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(body, &req)
	a.mu.Lock()
	a.attempts++
	first := a.attempts == 1
	a.requestID = req.RequestID
	a.mu.Unlock()
	if !first {
		return http.DefaultTransport.RoundTrip(r)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-a.abandon:
			cancel()
		case <-ctx.Done():
		}
	}()
	return http.DefaultTransport.RoundTrip(r.WithContext(ctx))
}

func (a *abandoning) rid() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requestID
}

// TestRetryKeepsItsLeaseAgainstItsAbandonedAttemptsLateCancel replays the
// cancel-wait race of issue 13 through the client against a real cluster:
// B's first attempt queues behind holder H; C queues behind B; B's first
// attempt is abandoned and B retries with the same request id; the
// coordinator's cancel for the abandoned attempt is held back until after H
// releases and B's retry is granted. B must keep its lease (the late cancel
// used to give it back and grant C: two holders), and B must be granted
// before C (the retry used to go to the back of the line).
func TestRetryKeepsItsLeaseAgainstItsAbandonedAttemptsLateCancel(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const name, ttl = "customer-42", 3 * time.Second
	leaderLock := func() coordinator.Lock {
		l, _ := c.Node(c.WaitLeader(10 * time.Second)).Machine().Lock(name)
		return l
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			<-time.After(5 * time.Millisecond) // polling interval of a bounded wait
		}
	}

	h, err := lock.NewClient(c.URLs(), lock.WithOwner("h")).Acquire(ctx, name, ttl)
	if err != nil {
		t.Fatal(err)
	}
	hold := c.HoldCancelWaits()
	defer hold.Release()

	tr := &abandoning{abandon: make(chan struct{})}
	b := lock.NewClient(c.URLs(), lock.WithOwner("b"), lock.WithHTTPClient(&http.Client{Transport: tr}))
	bGot := make(chan acquired, 1)
	go func() {
		l, err := b.Acquire(ctx, name, ttl, lock.Wait(20*time.Second))
		bGot <- acquired{l, err}
	}()
	waitFor("B's first attempt queued", func() bool { return leaderLock().Waiters == 1 })

	cGot := make(chan acquired, 1)
	go func() {
		l, err := lock.NewClient(c.URLs(), lock.WithOwner("c")).Acquire(ctx, name, ttl, lock.Wait(20*time.Second))
		cGot <- acquired{l, err}
	}()
	waitFor("C queued behind B", func() bool { return leaderLock().Waiters == 2 })

	close(tr.abandon)
	waitFor("the coordinator proposed the abandoned attempt's cancel (held back)", func() bool { return hold.Held() == 1 })
	waitFor("B's retry (attempt 2) applied", func() bool {
		return c.Node(c.WaitLeader(10*time.Second)).Machine().Attempt(tr.rid()) == 2
	})

	if err := h.Release(ctx); err != nil {
		t.Fatalf("H release: %v", err)
	}
	var bl *lock.Lease
	select {
	case r := <-bGot:
		if r.err != nil {
			t.Fatalf("B's retried acquire: %v", r.err)
		}
		bl = r.l
	case r := <-cGot:
		t.Fatalf("C (queued after B's first request) was granted first: %v %v", r.l, r.err)
	case <-ctx.Done():
		t.Fatal("B was never granted")
	}

	hold.Release() // the abandoned attempt's cancel lands now, after B's grant

	var state coordinator.Lock
	if err := getJSON(ctx, c.URL(c.Follower())+"/v1/locks/"+name, &state); err != nil {
		t.Fatalf("read lock state: %v", err)
	}
	if state.Holder == nil || state.Holder.ID != bl.ID() {
		t.Fatalf("after the late cancel the lock is %+v; want it held by B's lease %s", state, bl.ID())
	}
	select {
	case r := <-cGot:
		t.Fatalf("second holder: C was granted %v (err %v) while B holds %s", r.l, r.err, bl.ID())
	default:
	}
	if !bl.Valid() {
		t.Fatalf("B's lease is no longer valid: %v", bl.Err())
	}
	if err := bl.Release(ctx); err != nil {
		t.Fatalf("B release: %v", err)
	}
	r := <-cGot
	if r.err != nil || r.l.Token() <= bl.Token() {
		t.Fatalf("C after B: %v, token %v vs B's %d", r.err, r.l, bl.Token())
	}
	_ = r.l.Release(ctx)
}

func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return &httpError{resp.StatusCode, string(b)}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return http.StatusText(e.status) + ": " + e.body }
