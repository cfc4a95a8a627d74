package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/payonce/payonce/internal/errs"
)

// StormRequest asks for a retry storm: Requests identical create-order
// requests carrying one Idempotency-Key, sent at once to every orders
// instance in turn, as a client retrying through a flaky network would.
type StormRequest struct {
	Requests   int    `json:"requests"`
	CustomerID string `json:"customer_id"`
	// Card is charged; a card the bank declines shows the failure path.
	Card string `json:"card,omitempty"`
}

// StormResult is what a storm led to. The guarantee on show: however many
// requests, one order, one payment and at most one capture at the bank.
type StormResult struct {
	ID         string    `json:"id"`
	Key        string    `json:"key"`
	CustomerID string    `json:"customer_id"`
	Requests   int       `json:"requests"`
	TraceID    string    `json:"trace_id"`
	StartedAt  time.Time `json:"started_at"`
	// Answers counts how the requests were answered.
	Answers KeyCounts `json:"answers"`
	// Orders is how many distinct order ids came back (the guarantee: 1).
	Orders      int    `json:"orders"`
	OrderID     string `json:"order_id,omitempty"`
	OrderStatus string `json:"order_status,omitempty"`
	PaymentID   string `json:"payment_id,omitempty"`
	// Charges counts the bank's captures for the payment (the guarantee: at
	// most 1, exactly 1 once paid); -1 until the order is settled.
	Charges int    `json:"charges"`
	Done    bool   `json:"done"`
	Error   string `json:"error,omitempty"`
}

// Bounds of a storm: enough to show the guarantee, too few to hurt a laptop.
const (
	maxStormRequests = 200
	stormSettle      = 60 * time.Second // time the order gets to be paid or failed
	stormRetry409For = 30 * time.Second // a request answered 409 in flight retries this long
)

// StartStorm validates req, starts the storm in the background and returns
// its first state; the views that follow show its progress and result.
func (c *Console) StartStorm(ctx context.Context, req StormRequest) (StormResult, error) {
	if !c.cfg.DevMode {
		return StormResult{}, ErrDevModeOff
	}
	if req.Card == "" {
		req.Card = "4242424242424242"
	}
	var fields []errs.FieldError
	if req.Requests < 1 || req.Requests > maxStormRequests {
		fields = append(fields, errs.FieldError{Field: "requests", Reason: fmt.Sprintf("between 1 and %d", maxStormRequests)})
	}
	if err := validCustomer(req.CustomerID); err != nil {
		fields = append(fields, errs.As(err).Fields...)
	}
	if !cardPattern.MatchString(req.Card) {
		fields = append(fields, errs.FieldError{Field: "card", Reason: "12 to 19 digits"})
	}
	if len(fields) > 0 {
		return StormResult{}, errs.E(errs.Invalid, "invalid storm").WithFields(fields...)
	}
	m, err := c.cfg.Stack.Membership(ctx, "orders")
	if err != nil || len(m.Instances) == 0 {
		return StormResult{}, errs.Wrap(errs.Unavailable, "no orders instance to send the storm to", err)
	}
	id, traceID := randomHex(6), randomHex(16)
	res := StormResult{ID: id, Key: "console-storm-" + id, CustomerID: req.CustomerID, Requests: req.Requests,
		TraceID: traceID, StartedAt: time.Now(), Charges: -1, Answers: KeyCounts{Key: "console-storm-" + id}}
	c.Watch(req.CustomerID)
	c.updateStorm(res)
	// The storm outlives the request that started it.
	go c.storm(context.WithoutCancel(ctx), req, res, m.Instances)
	return res, nil
}

func (c *Console) storm(ctx context.Context, req StormRequest, res StormResult, orders []Instance) {
	body, _ := json.Marshal(map[string]any{
		"customer_id": req.CustomerID, "currency": "EUR", "card": req.Card,
		"lines": []map[string]any{{"sku": "espresso", "quantity": 1}},
	})
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	for i := range req.Requests {
		wg.Go(func() {
			// Every request is a span of the storm's one trace, so the whole
			// storm reads as one tree in Jaeger.
			traceparent := "00-" + res.TraceID + "-" + randomHex(8) + "-01"
			addr := orders[i%len(orders)].Addr
			deadline := time.Now().Add(stormRetry409For)
			for {
				reply, err := c.cfg.Stack.CreateOrder(ctx, addr, res.Key, traceparent, body)
				mu.Lock()
				if err != nil {
					reply.Answer = AnswerFailed
				}
				switch reply.Answer {
				case AnswerInFlight:
					res.Answers.InFlight++
				case AnswerMismatched:
					res.Answers.Mismatched++
				case AnswerReplayed:
					res.Answers.Replayed++
					ids[reply.Order.ID] = true
				case AnswerFirst:
					res.Answers.First++
					ids[reply.Order.ID] = true
				default:
					res.Answers.Failed++
				}
				res.Orders = len(ids)
				for id := range ids {
					res.OrderID = id
				}
				c.updateStorm(res)
				mu.Unlock()
				// A client told "in flight" asks again a moment later, as
				// the idempotency draft expects; everything else is final.
				if reply.Answer != AnswerInFlight || time.Now().After(deadline) {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
	if res.OrderID == "" {
		res.Done, res.Error = true, "no request created the order"
		c.updateStorm(res)
		return
	}
	c.mu.Lock()
	c.traces[res.OrderID] = res.TraceID
	c.mu.Unlock()

	// Follow the order until it is settled, then count the bank's captures.
	deadline := time.Now().Add(stormSettle)
	for {
		o, err := c.cfg.Stack.GetOrder(ctx, orders[0].Addr, res.OrderID)
		if err == nil {
			res.OrderStatus, res.PaymentID = o.Status, o.PaymentID
			c.updateStorm(res)
		}
		if err == nil && o.Status != "pending_payment" {
			break
		}
		if time.Now().After(deadline) {
			res.Done, res.Error = true, fmt.Sprintf("order still %s after %s", res.OrderStatus, stormSettle)
			c.updateStorm(res)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	if res.PaymentID != "" {
		n, err := c.cfg.Stack.BankCaptures(ctx, res.PaymentID)
		if err != nil {
			res.Error = fmt.Sprintf("count captures: %v", err)
		}
		res.Charges = n
	} else {
		res.Charges = 0
	}
	res.Done = true
	c.updateStorm(res)
}

// updateStorm records a storm's latest state (and its key's answers).
func (c *Console) updateStorm(res StormResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	upsert(&c.storms, res, maxStorms, func(s StormResult) bool { return s.ID == res.ID })
	upsert(&c.keys, res.Answers, maxKeys, func(k KeyCounts) bool { return k.Key == res.Key })
}

// upsert replaces the element match finds, or puts v first, keeping at most
// limit elements.
func upsert[T any](s *[]T, v T, limit int, match func(T) bool) {
	for i := range *s {
		if match((*s)[i]) {
			(*s)[i] = v
			return
		}
	}
	*s = append([]T{v}, *s...)
	if len(*s) > limit {
		*s = (*s)[:limit]
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
