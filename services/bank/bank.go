package bank

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/money"
)

// Status is where an authorisation stands.
type Status string

// Authorisation statuses.
const (
	// Authorized means the funds are held but not yet taken.
	Authorized Status = "authorized"
	// Captured means the funds were taken; refunds may follow.
	Captured Status = "captured"
	// Declined means the card issuer refused; nothing was held.
	Declined Status = "declined"
)

// Authorization is a hold on a card, and once captured, a charge.
type Authorization struct {
	ID       string `json:"id"`
	Status   Status `json:"status"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// Reference is the merchant's own id for the payment, echoed back.
	Reference      string    `json:"reference,omitempty"`
	CardLast4      string    `json:"card_last4"`
	CapturedAmount int64     `json:"captured_amount"`
	RefundedAmount int64     `json:"refunded_amount"`
	DeclineReason  string    `json:"decline_reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// Refund returns part or all of a captured amount.
type Refund struct {
	ID              string    `json:"id"`
	AuthorizationID string    `json:"authorization_id"`
	Amount          int64     `json:"amount"`
	Currency        string    `json:"currency"`
	CreatedAt       time.Time `json:"created_at"`
}

// EntryKind names a ledger entry.
type EntryKind string

// Ledger entry kinds. Only captures and refunds move money.
const (
	EntryAuthorize EntryKind = "authorize"
	EntryDecline   EntryKind = "decline"
	EntryCapture   EntryKind = "capture"
	EntryRefund    EntryKind = "refund"
)

// LedgerEntry records one effect the bank applied. Replays of an idempotent
// request add no entry: counting entries counts real effects.
type LedgerEntry struct {
	Seq             int64     `json:"seq"`
	Kind            EntryKind `json:"kind"`
	AuthorizationID string    `json:"authorization_id"`
	Amount          int64     `json:"amount"`
	Currency        string    `json:"currency"`
	Reference       string    `json:"reference,omitempty"`
	IdempotencyKey  string    `json:"idempotency_key"`
	At              time.Time `json:"at"`
}

// AuthorizeRequest asks for a hold on a card, captured at once if Capture.
type AuthorizeRequest struct {
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Card      string `json:"card"`
	Reference string `json:"reference,omitempty"`
	Capture   bool   `json:"capture,omitempty"`
}

// Validate checks the request before any effect.
func (r AuthorizeRequest) Validate() error {
	if err := (money.Money{Amount: r.Amount, Currency: money.Currency(r.Currency)}).Validate(); err != nil {
		return err
	}
	if len(r.Card) < 12 || len(r.Card) > 19 || !allDigits(r.Card) {
		return errs.E(errs.Invalid, "card must be 12 to 19 digits").
			WithFields(errs.FieldError{Field: "card", Reason: "12 to 19 digits"})
	}
	if len(r.Reference) > 200 {
		return errs.E(errs.Invalid, "reference is too long").
			WithFields(errs.FieldError{Field: "reference", Reason: "at most 200 characters"})
	}
	return nil
}

// ErrResponseLost marks a request the bank processed and whose response it
// then "lost", as a network failure would: the transport drops the
// connection instead of answering. The effect is in the ledger.
var ErrResponseLost = errors.New("bank simulator: response deliberately lost after processing")

// Simulator is the in-memory simulated bank. It is safe for concurrent use.
type Simulator struct {
	now func() time.Time

	mu      sync.Mutex
	faults  Faults
	rng     *rand.Rand
	auths   map[string]*Authorization
	refunds map[string]*Refund
	results map[string]storedResult
	ledger  []LedgerEntry
	nextID  int64
}

// storedResult is what an idempotency key maps to: a fingerprint of the
// request that used it first, and that request's outcome.
type storedResult struct {
	fingerprint string
	value       any
	err         error
}

// NewSimulator returns an empty bank with the given faults; seed makes the
// random faults reproducible.
func NewSimulator(faults Faults, seed uint64) *Simulator {
	return &Simulator{
		now:     time.Now,
		faults:  faults,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		auths:   map[string]*Authorization{},
		refunds: map[string]*Refund{},
		results: map[string]storedResult{},
	}
}

// Authorize holds (and, if asked, captures) an amount on a card.
func (s *Simulator) Authorize(ctx context.Context, key string, req AuthorizeRequest) (Authorization, error) {
	if err := req.Validate(); err != nil {
		return Authorization{}, err
	}
	v, err := s.idempotent(ctx, key, fingerprint("authorize", req), func() (any, error) {
		a := &Authorization{
			ID:        s.newID("auth"),
			Amount:    req.Amount,
			Currency:  req.Currency,
			Reference: req.Reference,
			CardLast4: req.Card[len(req.Card)-4:],
			CreatedAt: s.now().UTC(),
		}
		if slices.Contains(s.faults.DeclineCards, req.Card) {
			a.Status, a.DeclineReason = Declined, "card_declined"
			s.auths[a.ID] = a
			s.record(EntryDecline, a, 0, key)
			return *a, nil
		}
		a.Status = Authorized
		s.auths[a.ID] = a
		s.record(EntryAuthorize, a, a.Amount, key)
		if req.Capture {
			a.Status, a.CapturedAmount = Captured, a.Amount
			s.record(EntryCapture, a, a.Amount, key)
		}
		return *a, nil
	})
	a, _ := v.(Authorization)
	return a, err
}

// Capture takes up to the authorised amount of a held authorisation.
func (s *Simulator) Capture(ctx context.Context, key, authID string, amount int64) (Authorization, error) {
	v, err := s.idempotent(ctx, key, fingerprint("capture", authID, amount), func() (any, error) {
		a, ok := s.auths[authID]
		if !ok {
			return nil, errs.Errorf(errs.NotFound, "authorization %q not found", authID)
		}
		if a.Status != Authorized {
			return nil, errs.Errorf(errs.Conflict, "authorization %s is %s, not authorized", authID, a.Status)
		}
		if amount <= 0 || amount > a.Amount {
			return nil, errs.Errorf(errs.Invalid, "capture amount must be between 1 and %d", a.Amount)
		}
		a.Status, a.CapturedAmount = Captured, amount
		s.record(EntryCapture, a, amount, key)
		return *a, nil
	})
	a, _ := v.(Authorization)
	return a, err
}

// Refund returns part of a captured amount; the total refunded never
// exceeds what was captured.
func (s *Simulator) Refund(ctx context.Context, key, authID string, amount int64) (Refund, error) {
	v, err := s.idempotent(ctx, key, fingerprint("refund", authID, amount), func() (any, error) {
		a, ok := s.auths[authID]
		if !ok {
			return nil, errs.Errorf(errs.NotFound, "authorization %q not found", authID)
		}
		if a.Status != Captured {
			return nil, errs.Errorf(errs.Conflict, "authorization %s is %s; only captured payments can be refunded", authID, a.Status)
		}
		if amount <= 0 || amount > a.CapturedAmount-a.RefundedAmount {
			return nil, errs.Errorf(errs.Invalid, "refund amount must be between 1 and %d (captured minus refunded)", a.CapturedAmount-a.RefundedAmount)
		}
		a.RefundedAmount += amount
		r := &Refund{ID: s.newID("refund"), AuthorizationID: a.ID, Amount: amount, Currency: a.Currency, CreatedAt: s.now().UTC()}
		s.refunds[r.ID] = r
		s.record(EntryRefund, a, amount, key)
		return *r, nil
	})
	r, _ := v.(Refund)
	return r, err
}

// Authorization returns an authorisation by id.
func (s *Simulator) Authorization(_ context.Context, id string) (Authorization, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.auths[id]
	if !ok {
		return Authorization{}, errs.Errorf(errs.NotFound, "authorization %q not found", id)
	}
	return *a, nil
}

// LedgerFilter selects ledger entries; empty fields match everything.
type LedgerFilter struct {
	Reference      string
	IdempotencyKey string
	Kind           EntryKind
}

// Ledger returns the entries matching f in the order they were applied.
func (s *Simulator) Ledger(_ context.Context, f LedgerFilter) []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []LedgerEntry{}
	for _, e := range s.ledger {
		if (f.Reference == "" || e.Reference == f.Reference) &&
			(f.IdempotencyKey == "" || e.IdempotencyKey == f.IdempotencyKey) &&
			(f.Kind == "" || e.Kind == f.Kind) {
			out = append(out, e)
		}
	}
	return out
}

// idempotent runs apply at most once per key. A replay of the same request
// returns the first outcome; a different request under the same key is
// refused.
// Faults are drawn here: a failure before apply changes nothing, a lost
// response happens after apply has taken effect.
func (s *Simulator) idempotent(ctx context.Context, key, fp string, apply func() (any, error)) (any, error) {
	if key == "" || len(key) > 255 {
		return nil, errs.E(errs.Invalid, "Idempotency-Key header is required (1 to 255 characters)").WithType("idempotency-key-missing")
	}
	latency, fail, lose, answer := s.drawFaults()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errs.Wrap(errs.Unavailable, "request cancelled", ctx.Err())
		case <-t.C:
		}
	}
	if fail {
		return nil, errs.E(errs.Unavailable, "bank simulator: injected failure before processing; nothing was charged")
	}
	if answer != 0 {
		return nil, InjectedAnswer{Status: answer}
	}

	// apply runs under the lock, so two requests with one key are
	// serialised: the second sees the first's stored result.
	s.mu.Lock()
	if prev, ok := s.results[key]; ok {
		s.mu.Unlock()
		if prev.fingerprint != fp {
			return nil, errs.E(errs.Unprocessable, "idempotency key was already used with different parameters").WithType("idempotency-key-reused")
		}
		return prev.value, prev.err
	}
	v, err := apply()
	// Validation-style failures are not stored, so a corrected request may
	// reuse the key; effects and business outcomes are.
	if err == nil || errs.KindOf(err) == errs.Conflict {
		s.results[key] = storedResult{fingerprint: fp, value: v, err: err}
	}
	s.mu.Unlock()
	if lose && err == nil {
		return v, ErrResponseLost
	}
	return v, err
}

func (s *Simulator) drawFaults() (latency time.Duration, fail, lose bool, answer int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults
	latency = time.Duration(f.LatencyMS) * time.Millisecond
	switch {
	case len(f.AnswerNext) > 0:
		answer, f.AnswerNext = f.AnswerNext[0], f.AnswerNext[1:]
	case f.FailNext > 0:
		f.FailNext--
		fail = true
	case f.ErrorRate > 0 && s.rng.Float64() < f.ErrorRate:
		fail = true
	case f.LoseNext > 0:
		f.LoseNext--
		lose = true
	case f.LoseResponseRate > 0 && s.rng.Float64() < f.LoseResponseRate:
		lose = true
	}
	return latency, fail, lose, answer
}

func (s *Simulator) newID(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s_%06d", prefix, s.nextID)
}

func (s *Simulator) record(kind EntryKind, a *Authorization, amount int64, key string) {
	s.ledger = append(s.ledger, LedgerEntry{
		Seq:             int64(len(s.ledger) + 1),
		Kind:            kind,
		AuthorizationID: a.ID,
		Amount:          amount,
		Currency:        a.Currency,
		Reference:       a.Reference,
		IdempotencyKey:  key,
		At:              s.now().UTC(),
	})
}

func fingerprint(op string, parts ...any) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s%+v", op, parts)
	return hex.EncodeToString(h.Sum(nil))
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
