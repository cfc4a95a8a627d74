package raftnode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/fsm"
)

// The porcupine model of one lock with leases that never expire during the
// test (TTL one minute): an acquire succeeds only when nobody holds the lock
// and its token beats every earlier grant; a release succeeds only for the
// holder. Operations whose outcome the client never learned may or may not
// have taken effect, so the model is nondeterministic.
type lockIn struct {
	Key     string
	Acquire bool
	LeaseID string // release only
}

type lockOut struct {
	OK      bool
	Unknown bool
	LeaseID string
	Token   coordinator.FenceToken
}

type lockState struct {
	Holder    string // lease id, "?" for a grant whose id nobody learned, "" when free
	LastToken coordinator.FenceToken
}

var lockModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(lockIn).Key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() []any { return []any{lockState{}} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(lockState), input.(lockIn), output.(lockOut)
		if in.Acquire {
			switch {
			case out.Unknown:
				next := []any{s}
				if s.Holder == "" {
					next = append(next, lockState{Holder: "?", LastToken: s.LastToken})
				}
				return next
			case out.OK:
				if s.Holder == "" && out.Token > s.LastToken {
					return []any{lockState{Holder: out.LeaseID, LastToken: out.Token}}
				}
				return nil
			default:
				if s.Holder != "" {
					return []any{s}
				}
				return nil
			}
		}
		switch {
		case out.Unknown:
			if s.Holder == in.LeaseID {
				return []any{s, lockState{LastToken: s.LastToken}}
			}
			return []any{s}
		case out.OK:
			if s.Holder == in.LeaseID {
				return []any{lockState{LastToken: s.LastToken}}
			}
			return nil
		default:
			if s.Holder != in.LeaseID {
				return []any{s}
			}
			return nil
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(lockIn), output.(lockOut)
		if in.Acquire {
			return fmt.Sprintf("acquire(%s) -> ok=%v unknown=%v token=%d", in.Key, out.OK, out.Unknown, out.Token)
		}
		return fmt.Sprintf("release(%s, %s) -> ok=%v unknown=%v", in.Key, in.LeaseID, out.OK, out.Unknown)
	},
}

// history records operations with monotonic timestamps.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// TestChaosLinearizableLocksAndIdenticalReplicas runs concurrent clients on
// two contended locks while leaders are killed and restarted and nodes are
// partitioned, then checks that the lock history is linearizable (never two
// holders at once, tokens increasing) and that every replica's state hashes
// the same at the same applied index.
func TestChaosLinearizableLocksAndIdenticalReplicas(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c.waitLeader(10 * time.Second)

	h := &history{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	keys := []string{"customer-1", "customer-2"}
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := keys[(client+i)%len(keys)]
				lease, ok := clientAcquire(ctx, c, h, client, key, fmt.Sprintf("c%d-%d", client, i))
				if !ok {
					continue
				}
				if !clientRelease(ctx, c, h, client, key, lease) {
					return // unknown release outcome: this client stops, the lock may stay held
				}
			}
		}()
	}

	// Chaos schedule: kill the leader, bring it back, isolate the new leader,
	// heal; twice.
	step := func(d time.Duration) { <-time.After(d) } // the schedule's pacing, not a wait for a condition
	for round := range 2 {
		step(700 * time.Millisecond)
		l := c.waitLeader(10 * time.Second)
		c.kill(l)
		t.Logf("round %d: killed leader %s", round, c.peers[l].ID)
		step(700 * time.Millisecond)
		c.start(l)
		step(500 * time.Millisecond)
		l2 := c.waitLeader(10 * time.Second)
		c.net.Isolate(c.peers[l2].Addr, c.addrs()...)
		t.Logf("round %d: isolated leader %s", round, c.peers[l2].ID)
		step(900 * time.Millisecond)
		c.net.Heal()
	}
	step(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	c.waitLeader(10 * time.Second)
	c.grant(ctx, "final", "final")
	idx, hashes := c.waitConverged(15 * time.Second)
	if !allSame(hashes) {
		t.Fatalf("replicas differ at index %d: %v", idx, hashes)
	}
	t.Logf("all %d replicas hash the same at applied index %d", len(hashes), idx)

	var grants int
	for _, op := range h.ops {
		if op.Input.(lockIn).Acquire && op.Output.(lockOut).OK {
			grants++
		}
	}
	if grants < 20 {
		t.Fatalf("only %d grants in the chaos run; the check would prove little", grants)
	}
	res, info := porcupine.CheckOperationsVerbose(lockModel.ToModel(), h.ops, 30*time.Second)
	if res != porcupine.Ok {
		_ = info
		t.Fatalf("lock history of %d operations (%d grants) is %s", len(h.ops), grants, res)
	}
	t.Logf("linearizable: %d operations, %d grants", len(h.ops), grants)
}

// clientAcquire retries one acquire with one request id until it gets a
// definite answer; the request id makes the retries one operation.
func clientAcquire(ctx context.Context, c *cluster, h *history, client int, key, rid string) (string, bool) {
	call := h.now()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.apply(actx, fsm.Command{Op: fsm.OpAcquire, Lock: key, RequestID: rid, TTL: time.Minute})
	in := lockIn{Key: key, Acquire: true}
	switch {
	case err != nil:
		h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: lockOut{Unknown: true}, Return: math.MaxInt64})
		return "", false
	case r.Lease != nil:
		h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: lockOut{OK: true, LeaseID: r.Lease.ID, Token: r.Lease.Token}, Return: h.now()})
		return r.Lease.ID, true
	default:
		h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: lockOut{}, Return: h.now()})
		return "", false
	}
}

// clientRelease retries a release until definite. Leases do not expire in
// this test, so "not held" after an attempt with an unknown outcome means
// that attempt released the lock.
func clientRelease(ctx context.Context, c *cluster, h *history, client int, key, lease string) bool {
	call := h.now()
	in := lockIn{Key: key, LeaseID: lease}
	deadline := time.Now().Add(5 * time.Second)
	ambiguous := false
	for time.Now().Before(deadline) {
		var r fsm.Result
		var err error
		called := false
		for i := range c.peers {
			n := c.node(i)
			if n == nil || !n.IsLeader() {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, time.Second)
			r, err = n.Apply(actx, fsm.Command{Op: fsm.OpRelease, Lock: key, LeaseID: lease})
			cancel()
			called = true
			break
		}
		switch {
		case !called:
		case err == nil && r.Err == nil:
			h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: lockOut{OK: true}, Return: h.now()})
			return true
		case errors.Is(r.Err, coordinator.ErrLeaseNotHeld), errors.Is(r.Err, coordinator.ErrLockNotFound):
			h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: lockOut{OK: ambiguous}, Return: h.now()})
			return true
		case err != nil:
			ambiguous = true
		}
		<-time.After(10 * time.Millisecond) // back off between retries
	}
	h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: lockOut{Unknown: true}, Return: math.MaxInt64})
	return false
}

// TestLockModelRejectsDoubleGrant shows the checker can fail: two clients
// both granted the same lock at overlapping times, or a grant with a lower
// token, is not linearizable.
func TestLockModelRejectsDoubleGrant(t *testing.T) {
	acq := func(client int, call, ret int64, id string, tok coordinator.FenceToken) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: lockIn{Key: "k", Acquire: true}, Call: call, Output: lockOut{OK: true, LeaseID: id, Token: tok}, Return: ret}
	}
	rel := func(client int, call, ret int64, id string) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: lockIn{Key: "k", LeaseID: id}, Call: call, Output: lockOut{OK: true}, Return: ret}
	}
	m := lockModel.ToModel()
	if !porcupine.CheckOperations(m, []porcupine.Operation{acq(0, 0, 1, "a", 5), rel(0, 2, 3, "a"), acq(1, 4, 5, "b", 7)}) {
		t.Fatal("a valid history was rejected")
	}
	if porcupine.CheckOperations(m, []porcupine.Operation{acq(0, 0, 1, "a", 5), acq(1, 2, 3, "b", 7)}) {
		t.Fatal("two holders at once were accepted")
	}
	if porcupine.CheckOperations(m, []porcupine.Operation{acq(0, 0, 1, "a", 5), rel(0, 2, 3, "a"), acq(1, 4, 5, "b", 4)}) {
		t.Fatal("a decreasing token was accepted")
	}
}
