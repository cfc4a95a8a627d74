// Command payonce-cli drives payonce's main scenarios against a running
// stack (make dev, or docker compose) and prints what each one shows:
//
//	payonce-cli demo                      # every scenario below, in order
//	payonce-cli order <customer> [key]    # create an order (and wait until it is paid)
//	payonce-cli fault lose|fail|clear     # set the bank simulator's faults
//	payonce-cli deadletters list          # messages consumers gave up on, with the reason
//	payonce-cli deadletters show <seq>    # one of them: headers and body
//	payonce-cli deadletters replay <seq>  # re-publish it, once its cause is fixed
//
// Flags or env: -orders (PAYONCE_ORDERS_URL), -payments (PAYONCE_PAYMENTS_URL),
// -bank (PAYONCE_BANK_URL), -key (PAYONCE_API_KEY), -nats (NATS_URL),
// -certs (PAYONCE_CERTS_DIR): the directory of the stack's certificates
// (ca.crt, admin-cli.crt/.key), for NATS's mutual TLS; make dev prints it
// at start-up. Without it the CLI connects to NATS without TLS, which only a
// test server accepts.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "payonce-cli:", err)
		os.Exit(1)
	}
}

type cli struct {
	orders, payments, bank, key string
	out                         io.Writer
	http                        *http.Client
	run                         string // makes keys unique per invocation
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	def := func(k, d string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return d
	}
	fs := flag.NewFlagSet("payonce-cli", flag.ContinueOnError)
	fs.SetOutput(stdout)
	c := &cli{out: stdout, http: &http.Client{Timeout: 30 * time.Second}, run: fmt.Sprintf("%x", time.Now().UnixNano())}
	fs.StringVar(&c.orders, "orders", def("PAYONCE_ORDERS_URL", "http://127.0.0.1:8080"), "orders base URL")
	fs.StringVar(&c.payments, "payments", def("PAYONCE_PAYMENTS_URL", "http://127.0.0.1:8090"), "payments base URL")
	fs.StringVar(&c.bank, "bank", def("PAYONCE_BANK_URL", "http://127.0.0.1:8099"), "bank simulator base URL")
	fs.StringVar(&c.key, "key", def("PAYONCE_API_KEY", "payonce-demo-key-1"), "API key")
	natsURL := fs.String("nats", def("NATS_URL", "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"), "NATS server URLs")
	certs := fs.String("certs", def("PAYONCE_CERTS_DIR", ""), "directory with ca.crt and admin-cli.crt/.key: connect to NATS as the operator, over mutual TLS")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		rest = []string{"demo"}
	}
	switch rest[0] {
	case "demo":
		return c.demo(ctx)
	case "order":
		if len(rest) < 2 {
			return errors.New("usage: payonce-cli order <customer> [idempotency-key]")
		}
		key := c.run + "-order"
		if len(rest) > 2 {
			key = rest[2]
		}
		o, err := c.createOrder(ctx, rest[1], key, 1)
		if err != nil {
			return err
		}
		_, err = c.waitFinal(ctx, o)
		return err
	case "fault":
		if len(rest) < 2 {
			return errors.New("usage: payonce-cli fault lose|fail|clear")
		}
		return c.fault(ctx, rest[1])
	case "deadletters":
		return c.deadletters(ctx, *natsURL, *certs, rest[1:])
	default:
		return fmt.Errorf("unknown command %q (want demo, order, fault or deadletters)", rest[0])
	}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (c *cli) do(ctx context.Context, method, url, key string, body any) (response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.key)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	r := response{status: resp.StatusCode, header: resp.Header}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &r.body)
	return r, nil
}

func (c *cli) say(format string, args ...any) { fmt.Fprintf(c.out, format+"\n", args...) }

func order(customer string, quantity int) map[string]any {
	return map[string]any{"customer_id": customer, "currency": "EUR", "card": "4242424242424242",
		"lines": []map[string]any{{"sku": "espresso", "quantity": quantity}}}
}

func (c *cli) createOrder(ctx context.Context, customer, key string, quantity int) (map[string]any, error) {
	r, err := c.do(ctx, "POST", c.orders+"/v1/orders", key, order(customer, quantity))
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusCreated {
		return nil, fmt.Errorf("create order: %d %v", r.status, r.body)
	}
	c.say("  201 order %v total %v %v, served by %s, status %v", r.body["id"], r.body["total"], r.body["currency"],
		r.header.Get("Payonce-Instance"), r.body["status"])
	return r.body, nil
}

func (c *cli) waitFinal(ctx context.Context, o map[string]any) (map[string]any, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, err := c.do(ctx, "GET", fmt.Sprintf("%s/v1/orders/%v", c.orders, o["id"]), "", nil)
		if err != nil {
			return nil, err
		}
		if s, _ := r.body["status"].(string); s != "pending_payment" {
			c.say("  order %v is %s (payment %v)", o["id"], s, r.body["payment_id"])
			return r.body, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("order %v still pending after 30s", o["id"])
}

func (c *cli) fault(ctx context.Context, kind string) error {
	faults := map[string]any{}
	switch kind {
	case "lose":
		faults["lose_next"] = 1
	case "fail":
		faults["fail_next"] = 1
	case "clear":
	default:
		return fmt.Errorf("unknown fault %q (want lose, fail or clear)", kind)
	}
	r, err := c.do(ctx, "PUT", c.bank+"/admin/faults", "", faults)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("set bank faults: %d %v", r.status, r.body)
	}
	c.say("  bank faults now %v", r.body)
	return nil
}

// demo runs the scenarios the README describes and fails if any of them
// does not show what it should.
func (c *cli) demo(ctx context.Context) error {
	customer := "demo-" + c.run

	c.say("1. create an order (the server computes the total from the catalog)")
	key := c.run + "-1"
	o, err := c.createOrder(ctx, customer, key, 2)
	if err != nil {
		return err
	}

	c.say("2. retry with the same Idempotency-Key: the stored answer is replayed")
	r, err := c.do(ctx, "POST", c.orders+"/v1/orders", key, order(customer, 2))
	if err != nil {
		return err
	}
	if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "true" || r.body["id"] != o["id"] {
		return fmt.Errorf("retry: %d replayed=%q id=%v", r.status, r.header.Get("Idempotent-Replayed"), r.body["id"])
	}
	c.say("  %d Idempotent-Replayed: true, same order %v", r.status, r.body["id"])

	c.say("3. reuse the key with a different body: refused")
	r, err = c.do(ctx, "POST", c.orders+"/v1/orders", key, order(customer, 3))
	if err != nil {
		return err
	}
	if r.status != http.StatusUnprocessableEntity {
		return fmt.Errorf("changed body: %d %v", r.status, r.body)
	}
	c.say("  %d %v", r.status, r.body["type"])

	c.say("4. the order is paid through NATS: orders.created -> payments -> bank -> payments.succeeded")
	if final, err := c.waitFinal(ctx, o); err != nil {
		return err
	} else if final["status"] != "paid" {
		return fmt.Errorf("order ended %v, want paid", final["status"])
	}

	c.say("5. the bank charges but the response is lost; the retry heals it")
	if err := c.fault(ctx, "lose"); err != nil {
		return err
	}
	payKey := c.run + "-pay"
	pay := map[string]any{"customer_id": customer, "amount": 1999, "currency": "EUR", "card": "4242424242424242"}
	r, err = c.do(ctx, "POST", c.payments+"/v1/payments", payKey, pay)
	if err != nil {
		return err
	}
	c.say("  first attempt: %d %v", r.status, firstNonEmpty(r.body["detail"], r.body["status"]))
	if r.status == http.StatusCreated {
		// Go's HTTP transport re-sends a request that carries an
		// Idempotency-Key when a reused connection drops before any answer;
		// the bank replayed the charge to that re-send.
		c.say("  (payments' HTTP client re-sent the call on the dropped connection; the bank replayed its charge)")
	}
	for attempt := 0; r.status != http.StatusCreated; attempt++ {
		if attempt > 50 {
			return fmt.Errorf("payment never succeeded: %d %v", r.status, r.body)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		if r, err = c.do(ctx, "POST", c.payments+"/v1/payments", payKey, pay); err != nil {
			return err
		}
	}
	c.say("  retry: %d payment %v %v", r.status, r.body["id"], r.body["status"])
	ledger, err := c.do(ctx, "GET", fmt.Sprintf("%s/v1/ledger?kind=capture&reference=%v", c.bank, r.body["id"]), "", nil)
	if err != nil {
		return err
	}
	entries, _ := ledger.body["entries"].([]any)
	if len(entries) != 1 {
		return fmt.Errorf("bank ledger shows %d captures for the payment, want 1", len(entries))
	}
	c.say("  bank ledger: exactly 1 capture")
	c.say("done: every scenario behaved as it should")
	return nil
}

func firstNonEmpty(vs ...any) any {
	for _, v := range vs {
		if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}
