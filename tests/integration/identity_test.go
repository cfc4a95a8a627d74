package integration

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/localnats"
)

// pki is a throwaway CA and the certificates a test issues with it.
type pki struct {
	dir string
	ca  *identity.CA

	// Each identity is issued once: parallel subtests that share their
	// top-level test's CA (testPKI) start parties of the same identities
	// (coordinator c1 of each subtest's cluster); writing one identity's
	// key and certificate twice at once could pair one write's key with
	// the other's certificate.
	mu     sync.Mutex
	issued map[identity.ID]identity.Files
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p, err := newPKIIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newPKIIn(dir string) (*pki, error) {
	ca, err := identity.NewCA("test CA", time.Now(), time.Hour)
	if err != nil {
		return nil, err
	}
	if err := ca.WriteCA(dir); err != nil {
		return nil, err
	}
	return &pki{dir: dir, ca: ca, issued: map[identity.ID]identity.Files{}}, nil
}

func (p *pki) issue(t *testing.T, id identity.ID) identity.Files {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.issued[id]; ok {
		return f
	}
	f, err := p.ca.WriteParty(p.dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1", "localhost"}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.issued[id] = f
	return f
}

// env is the environment that gives a service process identity id.
func (p *pki) env(t *testing.T, id identity.ID) []string {
	f := p.issue(t, id)
	return []string{"TLS_CERT_FILE=" + f.Cert, "TLS_KEY_FILE=" + f.Key, "TLS_CA_FILE=" + f.CA}
}

var (
	orders1   = identity.ID{Service: identity.Orders, Instance: "orders-1"}
	payments1 = identity.ID{Service: identity.Payments, Instance: "payments-1"}
	bankID    = identity.ID{Service: identity.Bank, Instance: "bank"}
)

// secureNATS starts a real nats-server that requires mutual TLS and knows
// the users of orders-1, payments-1 and the admin.
func secureNATS(t *testing.T, p *pki) string {
	t.Helper()
	s, err := localnats.Start(localnats.Options{
		StoreDir: t.TempDir(),
		Security: &localnats.Security{
			Server: p.issue(t, identity.ID{Service: identity.NATS, Instance: "nats"}),
			Users:  localnats.UsersFor(orders1, payments1, identity.AdminCLI),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	secureNATSURLs.Store(s.URL(), true)
	return s.URL()
}

// natsAs connects to url presenting files' certificate; asyncErrs receives
// the errors the server reports on the connection (permission violations).
func natsAs(url string, files *identity.Files, inbox string, asyncErrs chan<- error) (*nats.Conn, error) {
	opts := []nats.Option{nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	if files != nil {
		cfg, err := identity.ClientConfig(*files, identity.NATS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	if asyncErrs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case asyncErrs <- err:
			default:
			}
		}))
	}
	return nats.Connect(url, opts...)
}

func adminJetStream(t *testing.T, url string, p *pki) jetstream.JetStream {
	t.Helper()
	f := p.issue(t, identity.AdminCLI)
	nc, err := natsAs(url, &f, "", nil)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureStreams(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return js
}

func streamMessages(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestNATSRefusesAnonymousAndWronglyPermissionedPublishers attacks a real
// nats-server configured as the stack configures it: connections without
// a certificate, with one from another CA, or with a party that has no
// business on the bus are refused; a service's user publishing the other
// service's events is refused by the server and nothing reaches the stream,
// while its own events go through.
func TestNATSRefusesAnonymousAndWronglyPermissionedPublishers(t *testing.T) {
	p := newPKI(t)
	url := secureNATS(t, p)
	admin := adminJetStream(t, url, p)

	foreign := newPKI(t)
	foreignFiles := foreign.issue(t, orders1)
	foreignFiles.CA = p.issue(t, bankID).CA // it trusts the real server; the server must not trust it
	bankFiles := p.issue(t, bankID)
	for name, files := range map[string]*identity.Files{
		"anonymous, no TLS":                             nil,
		"orders-1's name on a foreign CA's certificate": &foreignFiles,
		"the bank (a valid party with no NATS user)":    &bankFiles,
	} {
		t.Run("connect: "+name, func(t *testing.T) {
			nc, err := natsAs(url, files, "", nil)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			t.Logf("refused: %v", err)
		})
	}

	for _, c := range []struct {
		who     identity.ID
		subject string
		stream  string
	}{
		{orders1, events.PaymentSucceeded, "PAYMENTS"},
		{payments1, events.OrderCreated, "ORDERS"},
	} {
		t.Run(c.who.Service+" publishing "+c.subject, func(t *testing.T) {
			files := p.issue(t, c.who)
			asyncErrs := make(chan error, 16)
			nc, err := natsAs(url, &files, eventbus.InboxPrefix(c.who.Service), asyncErrs)
			if err != nil {
				t.Fatalf("%s cannot connect: %v", c.who, err)
			}
			defer nc.Close()
			before := streamMessages(t, admin, c.stream)

			if err := nc.Publish(c.subject, []byte(`{"forged":true}`)); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-asyncErrs:
				if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
					t.Fatalf("server said %v, want a permissions violation", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server did not refuse the publish")
			}
			// Through JetStream too: no acknowledgement, nothing stored.
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := js.Publish(ctx, c.subject, []byte(`{"forged":true}`)); err == nil {
				t.Fatal("JetStream acknowledged the forged event")
			}
			if after := streamMessages(t, admin, c.stream); after != before {
				t.Fatalf("stream %s went from %d to %d messages", c.stream, before, after)
			}

			// Its own events go through, so the refusal above is about the
			// subject, not a broken connection.
			own := map[string]string{identity.Orders: events.OrderCreated, identity.Payments: events.PaymentSucceeded}[c.who.Service]
			ack, err := js.Publish(context.Background(), own, []byte(`{}`))
			if err != nil {
				t.Fatalf("%s publishing its own %s: %v", c.who, own, err)
			}
			if ack.Stream == c.stream {
				t.Fatalf("own event landed in %s", c.stream)
			}
		})
	}

	t.Run("payments reading orders' replies", func(t *testing.T) {
		files := p.issue(t, payments1)
		asyncErrs := make(chan error, 16)
		nc, err := natsAs(url, &files, eventbus.InboxPrefix(identity.Payments), asyncErrs)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := nc.SubscribeSync(eventbus.InboxPrefix(identity.Orders) + ".>"); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		select {
		case err := <-asyncErrs:
			if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Fatalf("server said %v, want a permissions violation", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server let payments subscribe to orders' inbox")
		}
	})

	t.Run("dead letters only under its own consumers", func(t *testing.T) {
		files := p.issue(t, orders1)
		nc, err := natsAs(url, &files, eventbus.InboxPrefix(identity.Orders), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		own := eventbus.DeadLetterSubjectPrefix + "orders-payment-outcomes." + events.PaymentSucceeded
		if _, err := js.Publish(context.Background(), own, []byte(`{}`)); err != nil {
			t.Fatalf("orders dead-lettering its own consumer's message: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		forged := eventbus.DeadLetterSubjectPrefix + "payments-orders-created." + events.OrderCreated
		if _, err := js.Publish(ctx, forged, []byte(`{}`)); err == nil {
			t.Fatal("orders wrote a dead letter in payments' consumer's name")
		}
	})

	t.Run("orders deleting the payments stream", func(t *testing.T) {
		files := p.issue(t, orders1)
		nc, err := natsAs(url, &files, eventbus.InboxPrefix(identity.Orders), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, "PAYMENTS"); err == nil {
			t.Fatal("orders deleted the PAYMENTS stream")
		}
		if _, err := admin.Stream(context.Background(), "PAYMENTS"); err != nil {
			t.Fatalf("PAYMENTS stream after the attempt: %v", err)
		}
	})
}

// TestFlowsRunUnderIdentities runs orders and payments as real processes
// whose only way onto NATS is their certificate and their service's
// permissions: an order is created, charged through the coordinator's lock
// and the bank, and marked paid, which needs every grant (publish, stream
// creation, each durable consumer, acks) and nothing more.
func TestFlowsRunUnderIdentities(t *testing.T) {
	coord := startCoordinators(t)
	p := coord.pki // one CA for the coordinator, NATS and the instances
	natsURL := secureNATS(t, p)
	bank := startBank(t)
	s := &fullStack{coord: coord, bank: bank, natsURL: natsURL}
	s.payments = newPaymentsService(t, coord, bank, natsURL)
	s.orders = newOrdersService(t, coord, natsURL)
	var wg sync.WaitGroup
	// Both at once: whichever creates the streams first, the other must
	// start under its own permissions.
	for _, g := range []struct {
		group *serviceGroup
		id    identity.ID
	}{{s.payments, payments1}, {s.orders, orders1}} {
		env := p.env(t, g.id)
		wg.Add(1)
		go func() { defer wg.Done(); g.group.start(env...) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	s.waitMembers(t, "payments", 1)
	s.waitMembers(t, "orders", 1)

	r := call("POST", s.orders.urls[0]+"/v1/orders", testAPIKey, "identity-order-1", newOrder("cust-identity"))
	if r.Status != 201 {
		t.Fatalf("create order: %d %s", r.Status, r.Body)
	}
	var o orderBody
	r.decode(t, &o)
	paid := s.waitOrderStatus(t, o.ID, "paid")
	if paid.PaymentID == "" {
		t.Fatal("paid order without a payment id")
	}
	if n := len(bank.ledger(t, "", "")); n == 0 {
		t.Fatal("the bank has no ledger entry")
	}
	admin := adminJetStream(t, natsURL, p)
	for _, stream := range []string{"ORDERS", "PAYMENTS"} {
		if streamMessages(t, admin, stream) == 0 {
			t.Fatalf("no event in %s", stream)
		}
	}
}
