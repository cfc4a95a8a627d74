package lock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/google/uuid"

	"github.com/payonce/payonce/pkg/lock"
)

// The porcupine model of one lock as users see it through pkg/lock: leases
// with a TTL that the client keeps alive, linearizable reads of the holder,
// and the events that let a lease end without a release.
//
//   - acquire: granted (lease, token), refused (held), or unknown (an error:
//     it may have been granted to nobody who keeps it alive). A grant needs
//     a free lock and a token above every earlier known token.
//   - release: ok (the lease held the lock), not held, or unknown.
//   - read: the holder's lease id, or none. It must match the state.
//   - lost: the client's lease ended client-side (Done closed without a
//     release: a keepalive failed or the holder stopped). From its call
//     time, the client-side deadline, the server may expire the lease at
//     any point; before it, never.
//
// A lease that is expirable (lost, or granted to an unknown caller) may end
// before any later operation; a lease its client still holds may not: that
// is the "never two holders" guarantee.
type linIn struct {
	Key   string
	Op    string // acquire, release, read, lost
	Lease string // release, lost
	Wait  bool   // acquire: queued (a refusal says nothing then)
}

type linOut struct {
	OK      bool
	Unknown bool
	Lease   string // acquire: the granted lease; read: the holder, "" for none
	Token   uint64
}

type linState struct {
	Holder    string // lease id; "?" for a grant nobody learned; "" when free
	Expirable bool
	Last      uint64
}

var leaseModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(linIn).Key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() []any { return []any{linState{}} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(linState), input.(linIn), output.(linOut)
		starts := []linState{s}
		if s.Holder != "" && s.Expirable {
			starts = append(starts, linState{Last: s.Last}) // it expired first
		}
		var next []any
		for _, c := range starts {
			switch in.Op {
			case "acquire":
				switch {
				case out.Unknown:
					next = append(next, c)
					if c.Holder == "" {
						next = append(next, linState{Holder: "?", Expirable: true, Last: c.Last})
					}
				case out.OK:
					if c.Holder == "" && out.Token > c.Last {
						next = append(next, linState{Holder: out.Lease, Last: out.Token})
					}
				default:
					if in.Wait || c.Holder != "" {
						next = append(next, c)
					}
				}
			case "release":
				switch {
				case out.Unknown:
					next = append(next, c)
					if c.Holder == in.Lease {
						next = append(next, linState{Last: c.Last})
					}
				case out.OK:
					if c.Holder == in.Lease {
						next = append(next, linState{Last: c.Last})
					}
				default:
					if c.Holder != in.Lease {
						next = append(next, c)
					}
				}
			case "lost":
				if c.Holder == in.Lease {
					c.Expirable = true
				}
				next = append(next, c)
			case "read":
				switch {
				case out.Lease == "" && c.Holder == "":
					next = append(next, c)
				case out.Lease != "" && c.Holder == out.Lease:
					next = append(next, c)
				case out.Lease != "" && c.Holder == "?":
					next = append(next, linState{Holder: out.Lease, Expirable: true, Last: c.Last})
				}
			}
		}
		return next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linIn), output.(linOut)
		return fmt.Sprintf("%s(%s %s wait=%v) -> ok=%v unknown=%v lease=%s token=%d", in.Op, in.Key, in.Lease, in.Wait, out.OK, out.Unknown, out.Lease, out.Token)
	},
}

// linHistory records operations on one clock.
type linHistory struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *linHistory) at(t time.Time) int64 { return int64(t.Sub(h.start)) }
func (h *linHistory) now() int64           { return h.at(time.Now()) }

func (h *linHistory) add(client int, in linIn, call int64, out linOut, ret int64) {
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

func linAcquireHoldRelease(h *linHistory, client int, rng *rand.Rand, cl *lock.Client, urls []string, key string, ttl time.Duration) {
	wait := rng.IntN(3) == 0
	var opts []lock.AcquireOption
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if wait {
		opts = append(opts, lock.Wait(2*time.Second))
		if rng.IntN(3) == 0 {
			// The caller gives up first: the coordinator cancels the wait.
			var c2 context.CancelFunc
			ctx, c2 = context.WithTimeout(ctx, 150*time.Millisecond)
			defer c2()
		}
	}
	in := linIn{Key: key, Op: "acquire", Wait: wait}
	call := h.now()
	l, err := cl.Acquire(ctx, key, ttl, opts...)
	switch {
	case errors.Is(err, lock.ErrLockHeld):
		h.add(client, in, call, linOut{}, h.now())
		return
	case err != nil:
		h.add(client, in, call, linOut{Unknown: true}, math.MaxInt64)
		return
	}
	h.add(client, in, call, linOut{OK: true, Lease: l.ID(), Token: l.Token()}, h.now())
	// Hold: sometimes past the first keepalive (ttl/3), read while holding.
	<-time.After(time.Duration(rng.IntN(600)) * time.Millisecond) // the holder's work
	if rng.IntN(2) == 0 {
		linRead(h, client, urls[rng.IntN(3)], key)
	}
	if l.Err() != nil {
		dl := h.at(l.Deadline())
		h.add(client, linIn{Key: key, Op: "lost", Lease: l.ID()}, dl, linOut{}, max(dl, h.now()))
		return
	}
	call = h.now()
	rin := linIn{Key: key, Op: "release", Lease: l.ID()}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	err = l.Release(rctx)
	switch {
	case err == nil:
		h.add(client, rin, call, linOut{OK: true}, h.now())
	case errors.Is(err, lock.ErrLeaseLost) && l.Err() != nil && call < h.at(l.Deadline()):
		// Lost while releasing, or refused: either way the lease may have
		// expired from its deadline on.
		h.add(client, linIn{Key: key, Op: "lost", Lease: l.ID()}, h.at(l.Deadline()), linOut{}, h.now())
		h.add(client, rin, call, linOut{Unknown: true}, math.MaxInt64)
	default:
		h.add(client, linIn{Key: key, Op: "lost", Lease: l.ID()}, min(call, h.at(l.Deadline())), linOut{}, h.now())
		h.add(client, rin, call, linOut{Unknown: true}, math.MaxInt64)
	}
}

// linRead reads the lock linearizably from one node.
func linRead(h *linHistory, client int, base, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := h.now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/locks/"+url.PathEscape(key), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // no answer: nothing to check
	}
	defer resp.Body.Close()
	var body struct {
		Holder *struct {
			LeaseID string `json:"lease_id"`
		} `json:"holder"`
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		h.add(client, linIn{Key: key, Op: "read"}, call, linOut{}, h.now())
	case http.StatusOK:
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return
		}
		out := linOut{}
		if body.Holder != nil {
			out.Lease = body.Holder.LeaseID
		}
		h.add(client, linIn{Key: key, Op: "read"}, call, out, h.now())
	}
}

// linCrashedHolder takes the lock straight from the API and never keeps it
// alive, like a holder that crashed: the lease must end by its TTL, not
// before (the server's deadline is at least the send time + TTL).
func linCrashedHolder(h *linHistory, client int, base, key string, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	// It queues if the lock is held, so that most runs have crashed holders;
	// a grant after a wait still ends no earlier than send time + TTL.
	body, _ := json.Marshal(map[string]any{"request_id": uuid.NewString(), "attempt": 1, "ttl_ms": ttl.Milliseconds(), "wait_ms": 1500})
	in := linIn{Key: key, Op: "acquire", Wait: true}
	sent := time.Now()
	call := h.at(sent)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/locks/"+url.PathEscape(key)+"/leases", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.add(client, in, call, linOut{Unknown: true}, math.MaxInt64)
		return
	}
	defer resp.Body.Close()
	var lb struct {
		LeaseID string `json:"lease_id"`
		Token   uint64 `json:"token"`
	}
	switch {
	case resp.StatusCode == http.StatusCreated && json.NewDecoder(resp.Body).Decode(&lb) == nil:
		ret, expires := h.now(), h.at(sent.Add(ttl))
		if ret >= expires {
			// Granted so late that the lease may have ended before the
			// answer arrived: "lost" could not be ordered after the grant,
			// so record only that something may have been granted.
			h.add(client, in, call, linOut{Unknown: true}, math.MaxInt64)
			return
		}
		h.add(client, in, call, linOut{OK: true, Lease: lb.LeaseID, Token: lb.Token}, ret)
		h.add(client, linIn{Key: key, Op: "lost", Lease: lb.LeaseID}, expires, linOut{}, expires+1)
	case resp.StatusCode == http.StatusConflict:
		h.add(client, in, call, linOut{}, h.now())
	default:
		h.add(client, in, call, linOut{Unknown: true}, math.MaxInt64)
	}
}

// TestLeaseModelRejectsBadHistories: before the chaos test's verdict is
// trusted, the model must reject each failure of issue 13 as a history
// would show it: a stale read (a read after an acknowledged grant that
// shows no holder, or one that shows a holder whose lease has ended, as a
// leader cut off from the others would answer from its own state), a double grant (a second grant while the first
// holder's lease is still kept alive), and a repeated token.
func TestLeaseModelRejectsBadHistories(t *testing.T) {
	acq := func(client int, call, ret int64, lease string, tok uint64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linIn{Key: "k", Op: "acquire"}, Call: call, Output: linOut{OK: true, Lease: lease, Token: tok}, Return: ret}
	}
	rel := func(client int, call, ret int64, lease string) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linIn{Key: "k", Op: "release", Lease: lease}, Call: call, Output: linOut{OK: true}, Return: ret}
	}
	read := func(client int, call, ret int64, holder string) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linIn{Key: "k", Op: "read"}, Call: call, Output: linOut{Lease: holder}, Return: ret}
	}
	lost := func(client int, call, ret int64, lease string) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linIn{Key: "k", Op: "lost", Lease: lease}, Call: call, Output: linOut{}, Return: ret}
	}
	m := leaseModel.ToModel()
	for _, tc := range []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"grant, read, release, grant", true, []porcupine.Operation{acq(0, 0, 1, "a", 5), read(1, 2, 3, "a"), rel(0, 4, 5, "a"), acq(1, 6, 7, "b", 9), read(2, 8, 9, "b")}},
		{"a lease lost, then expired, then granted again", true, []porcupine.Operation{acq(0, 0, 1, "a", 5), lost(0, 2, 3, "a"), acq(1, 4, 5, "b", 9)}},
		{"stale read: no holder after an acknowledged grant", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), read(1, 2, 3, "")}},
		{"double grant: a second holder while the first keeps its lease", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), acq(1, 2, 3, "b", 7)}},
		{"double grant seen by a read", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), read(2, 2, 3, "b")}},
		{"stale read: an old leader cut off answers with the holder before a release and a new grant", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), rel(0, 2, 3, "a"), acq(1, 4, 5, "b", 9), read(2, 6, 7, "a")}},
		{"stale read: a cut-off leader still shows a lease the majority let expire", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), lost(0, 2, 3, "a"), acq(1, 4, 5, "b", 9), read(2, 6, 7, "a")}},
		{"repeated token", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), rel(0, 2, 3, "a"), acq(1, 4, 5, "b", 5)}},
		{"grant before the holder's lease could have ended", false, []porcupine.Operation{acq(0, 0, 1, "a", 5), acq(1, 2, 3, "b", 7), lost(0, 4, 5, "a")}},
	} {
		if got := porcupine.CheckOperations(m, tc.ops); got != tc.ok {
			t.Errorf("%s: linearizable=%v, want %v", tc.name, got, tc.ok)
		}
	}
}
