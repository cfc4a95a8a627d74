package integration

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/services/payments"
)

// terminations counts the messages a durable consumer terminated (the
// server's MSG_TERMINATED advisory), so a test sees a refused event leave
// the stream rather than inferring it from silence.
func terminations(t *testing.T, natsURL, stream, durable string) *atomic.Int64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var n atomic.Int64
	if _, err := nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+stream+"."+durable, func(*nats.Msg) { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// deadLetters counts the messages durable dead-lettered: the copies kept
// whole in the DEADLETTER stream.
func deadLetters(t *testing.T, js jetstream.JetStream, durable string) int {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, eventbus.DeadLetterStream)
	if err != nil {
		return 0
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(eventbus.DeadLetterSubjectPrefix+durable+".>"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// TestForgedPaymentOutcomesMoveNothing: with no payments service running,
// an order stays pending_payment; outcomes forged by someone who can
// publish on NATS (a wrong payment id, a wrong amount, a wrong caller,
// even sealed with the real key; or a right-looking one without the seal)
// are terminated, never applied: the order stays pending and no inbox row
// is written.
func TestForgedPaymentOutcomesMoveNothing(t *testing.T) {
	natsURL := testenv.NATS(t)
	coord := startCoordinators(t)
	ord := newOrdersService(t, coord, natsURL)
	ord.start()
	r := call("POST", ord.urls[0]+"/v1/orders", testAPIKey, "forge-1", newOrder("cust-forge"))
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o orderBody
	r.decode(t, &o)
	terminated := terminations(t, natsURL, "PAYMENTS", "orders-payment-outcomes")
	js := jetStream(t, natsURL)

	right := events.PaymentOutcomeEvent{EventID: "forged-" + o.ID, PaymentID: payments.PaymentIDForOrder(o.ID), OrderID: o.ID,
		Caller: "shop", CustomerID: "cust-forge", Amount: o.Total, Currency: "EUR", Status: "succeeded", OccurredAt: time.Now().UTC()}
	wrongPayment, wrongAmount, wrongCaller, wrongCurrency := right, right, right, right
	wrongPayment.EventID, wrongPayment.PaymentID = "forged-payment-id", "00000000-0000-0000-0000-000000000001"
	wrongAmount.EventID, wrongAmount.Amount = "forged-amount", 1
	wrongCaller.EventID, wrongCaller.Caller = "forged-caller", "other"
	wrongCurrency.EventID, wrongCurrency.Currency = "forged-currency", "USD"
	unsealed := right
	unsealed.EventID = "forged-unsealed"
	wrongKey := events.NewSealKey("not-the-services-secret").SealPaymentOutcome(right)
	wrongKey.EventID = "forged-wrong-key"
	forged := []events.PaymentOutcomeEvent{
		testSeal.SealPaymentOutcome(wrongPayment), testSeal.SealPaymentOutcome(wrongAmount),
		testSeal.SealPaymentOutcome(wrongCaller), testSeal.SealPaymentOutcome(wrongCurrency),
		unsealed, wrongKey,
	}
	for _, ev := range forged {
		publishCopies(t, js, events.PaymentSucceeded, ev, ev.EventID, 1)
	}
	eventually(t, 30*time.Second, "every forged outcome to be terminated", func() bool {
		return terminated.Load() == int64(len(forged)) && consumerDone(t, js, "PAYMENTS", "orders-payment-outcomes")
	})
	if got := deadLetters(t, js, "orders-payment-outcomes"); got != len(forged) {
		t.Fatalf("%d forged outcomes in the dead-letter stream, want %d", got, len(forged))
	}
	if got := ord.orderStatus(t, o.ID); got != "pending_payment" {
		t.Fatalf("order is %s after forged outcomes, want pending_payment", got)
	}
	if got := dbCount(t, ord.dbURL, `SELECT count(*) FROM inbox`); got != 0 {
		t.Fatalf("%d forged outcomes recorded in the inbox", got)
	}

	// The genuine outcome, sealed by the services' key, still moves it:
	// the checks refuse forgeries, not payments.
	publishCopies(t, js, events.PaymentSucceeded, testSeal.SealPaymentOutcome(right), "genuine", 1)
	eventually(t, 30*time.Second, "the genuine outcome to mark the order paid", func() bool {
		return ord.orderStatus(t, o.ID) == "paid"
	})
	if got := terminated.Load(); got != int64(len(forged)) {
		t.Fatalf("%d terminations, want %d", got, len(forged))
	}
}

// TestForgedOrderCreatedChargesNothing: orders.created events that no
// orders service wrote (no seal, a seal under another key, a sealed event
// altered after sealing) are terminated by payments: nothing is charged at
// the bank and no payment row is written.
func TestForgedOrderCreatedChargesNothing(t *testing.T) {
	natsURL := testenv.NATS(t)
	coord := startCoordinators(t)
	bank := startBank(t)
	svc := newPaymentsService(t, coord, bank, natsURL)
	svc.start()
	terminated := terminations(t, natsURL, "ORDERS", "payments-orders-created")
	js := jetStream(t, natsURL)

	genuine := events.OrderCreatedEvent{EventID: "evt-forged-order", OrderID: "11111111-1111-4111-8111-111111111111",
		Caller: "shop", CustomerID: "cust-forged", Amount: 990000, Currency: "EUR", Card: "4242424242424242", OccurredAt: time.Now().UTC()}
	unsealed := genuine
	wrongKey := events.NewSealKey("not-the-services-secret").SealOrderCreated(genuine)
	wrongKey.EventID = "evt-forged-order-2"
	altered := testSeal.SealOrderCreated(genuine)
	altered.EventID, altered.Amount = "evt-forged-order-3", 5 // sealed for another amount
	for i, ev := range []events.OrderCreatedEvent{unsealed, wrongKey, altered} {
		publishCopies(t, js, events.OrderCreated, ev, "forged-order-"+string(rune('a'+i)), 1)
	}
	eventually(t, 30*time.Second, "the forged orders to be terminated", func() bool {
		return terminated.Load() == 3 && consumerDone(t, js, "ORDERS", "payments-orders-created")
	})
	if got := deadLetters(t, js, "payments-orders-created"); got != 3 {
		t.Fatalf("%d forged orders in the dead-letter stream, want 3", got)
	}
	if got := len(bank.ledger(t, "", "")); got != 0 {
		t.Fatalf("forged orders reached the bank: %d ledger entries", got)
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != 0 {
		t.Fatalf("forged orders wrote %d payments", got)
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM inbox`); got != 0 {
		t.Fatalf("forged orders wrote %d inbox rows", got)
	}
}
