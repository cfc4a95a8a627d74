package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/quick"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/testenv"
)

func connect(t *testing.T, ctx context.Context) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	return js
}

// runConsumer runs c with handle until the test ends.
func runConsumer(t *testing.T, ctx context.Context, js jetstream.JetStream, c eventbus.Consumer, handle eventbus.Handler) {
	t.Helper()
	c.Tracer = noop.NewTracerProvider().Tracer("test")
	c.Propagator = propagation.TraceContext{}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx, js, handle) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestRedeliveryDelayGrowsAndIsCapped: the back-off never shrinks and
// never exceeds its cap, so a message is retried soon after any outage.
func TestRedeliveryDelayGrowsAndIsCapped(t *testing.T) {
	prop := func(n uint16) bool {
		a, b := eventbus.RedeliveryDelay(uint64(n)), eventbus.RedeliveryDelay(uint64(n)+1)
		return a > 0 && a <= b && b <= eventbus.MaxRedeliveryDelay
	}
	if err := quick.Check(prop, nil); err != nil {
		t.Fatal(err)
	}
	if got := eventbus.RedeliveryDelay(1000); got != eventbus.MaxRedeliveryDelay {
		t.Fatalf("delay after 1000 deliveries = %v, want the cap %v", got, eventbus.MaxRedeliveryDelay)
	}
}

// TestTransientFailuresHaveNoDeliveryLimit: a dependency down for longer
// than the old limit of 10 deliveries no longer loses the message; it is
// applied once the dependency is back, and nothing is dead-lettered.
func TestTransientFailuresHaveNoDeliveryLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := connect(t, ctx)
	pub := eventbus.Publisher{JS: js, Tracer: noop.NewTracerProvider().Tracer("t"), Propagator: propagation.TraceContext{}}
	if _, err := pub.Publish(ctx, "orders.created", "outage-1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	const failures = 15
	var mu sync.Mutex
	attempts := 0
	acked := make(chan int, 1)
	runConsumer(t, ctx, js, eventbus.Consumer{Stream: "ORDERS", Durable: "transient", MaxRedeliveryDelay: 200 * time.Millisecond},
		func(context.Context, jetstream.Msg) error {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			if attempts <= failures {
				return errors.New("orders database: connection refused")
			}
			acked <- attempts
			return nil
		})
	select {
	case n := <-acked:
		if n != failures+1 {
			t.Fatalf("acked on attempt %d, want %d", n, failures+1)
		}
	case <-ctx.Done():
		t.Fatalf("message not applied after %d failed attempts", attempts)
	}
	if dl, err := eventbus.DeadLetters(ctx, js, 0, 10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v, %v; want none for a transient failure", dl, err)
	}
}

// TestLongHandlerAndQueueAreNotRedelivered: handlers that take several
// AckWaits each, with more messages queued behind them than slots, are
// never redelivered: held messages are heartbeated from arrival.
func TestLongHandlerAndQueueAreNotRedelivered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := connect(t, ctx)
	pub := eventbus.Publisher{JS: js, Tracer: noop.NewTracerProvider().Tracer("t"), Propagator: propagation.TraceContext{}}
	const n = 4
	for i := range n {
		if _, err := pub.Publish(ctx, "orders.created", fmt.Sprintf("long-%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	const ackWait = time.Second
	var mu sync.Mutex
	deliveries := map[string]int{}
	done := make(chan struct{}, n)
	// One slot: the fourth message waits behind three handlers of
	// 2.5 AckWaits each, 7.5 AckWaits in all.
	runConsumer(t, ctx, js, eventbus.Consumer{Stream: "ORDERS", Durable: "long", Concurrency: 1, AckWait: ackWait},
		func(ctx context.Context, msg jetstream.Msg) error {
			mu.Lock()
			deliveries[string(msg.Data())]++
			mu.Unlock()
			// The work itself takes this long (a slow bank), not a
			// synchronisation sleep.
			select {
			case <-time.After(5 * ackWait / 2):
			case <-ctx.Done():
				return ctx.Err()
			}
			done <- struct{}{}
			return nil
		})
	for range n {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("handlers did not finish")
		}
	}
	cons, err := js.Consumer(ctx, "ORDERS", "long")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if got := deliveries[fmt.Sprint(i)]; got != 1 {
			t.Errorf("message %d delivered %d times, want 1 (deliveries %v)", i, got, deliveries)
		}
	}
}

// TestPoisonIsDeadLetteredAndReplayedOnce: a permanent failure puts the
// message, its headers and the reason in the dead-letter stream; once the
// cause is fixed, Replay re-publishes it and it is applied once, even if
// replayed twice.
func TestPoisonIsDeadLetteredAndReplayedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := connect(t, ctx)
	pub := eventbus.Publisher{JS: js, Tracer: noop.NewTracerProvider().Tracer("t"), Propagator: propagation.TraceContext{}}
	if _, err := pub.Publish(ctx, "payments.succeeded", "event-7", []byte(`{"event_id":"event-7"}`)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	fixed := false
	inbox := map[string]int{} // event id -> times applied, as a consumer's inbox
	applied := make(chan struct{}, 4)
	runConsumer(t, ctx, js, eventbus.Consumer{Stream: "PAYMENTS", Durable: "orders-outcomes"},
		func(_ context.Context, msg jetstream.Msg) error {
			mu.Lock()
			defer mu.Unlock()
			if !fixed {
				return eventbus.Permanent(errors.New("signature does not verify"))
			}
			inbox["event-7"]++
			applied <- struct{}{}
			return nil
		})
	var dls []eventbus.DeadLetter
	eventually(t, ctx, func() bool {
		var err error
		dls, err = eventbus.DeadLetters(ctx, js, 0, 10)
		return err == nil && len(dls) == 1
	})
	d := dls[0]
	if d.Subject != "payments.succeeded" || d.MsgID != "event-7" || string(d.Data) != `{"event_id":"event-7"}` ||
		d.Consumer != "orders-outcomes" || d.Reason != "permanent: signature does not verify" ||
		d.Header.Get(eventbus.DeadLetterStreamHeader) != "PAYMENTS" || d.Header.Get(eventbus.DeadLetterSequenceHeader) != "1" {
		t.Fatalf("dead letter %+v: want the message, its headers and the reason", d)
	}
	mu.Lock()
	fixed = true
	mu.Unlock()
	for range 2 {
		if _, err := eventbus.Replay(ctx, js, d.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
	}
	select {
	case <-applied:
	case <-ctx.Done():
		t.Fatal("replayed dead letter not applied")
	}
	cons, _ := js.Consumer(ctx, "PAYMENTS", "orders-outcomes")
	eventually(t, ctx, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if inbox["event-7"] != 1 {
		t.Fatalf("applied %d times, want 1", inbox["event-7"])
	}
	if left, err := eventbus.DeadLetters(ctx, js, 0, 10); err != nil || len(left) != 0 {
		t.Fatalf("dead letters after replay: %v, %v; want none", left, err)
	}
}

func eventually(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met before the deadline")
		case <-tick.C:
		}
	}
}
