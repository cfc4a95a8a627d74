package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"

	"github.com/google/uuid"
)

// A consumer checks an event before it acts on it, twice:
//
//  1. The seal: an HMAC-SHA256 over the event's meaningful fields with a key
//     only payonce's services hold (INTERNAL_SECRET). Anyone who can publish
//     on NATS without it (a leaked NATS credential, a misconfigured account)
//     can still publish, but cannot make a consumer act. NATS
//     authentication of publishers is the other half and lives in the
//     infrastructure; the seal keeps working if that half is missing or
//     breached. The key is shared by orders and payments; until each service
//     has its own signing identity (mTLS, NATS nkeys), a holder of the key can
//     forge either side's events, and docs/security.md says so.
//  2. Against what the consumer knows: orders moves an order only on an
//     outcome whose payment id is PaymentIDForOrder(order) and whose caller,
//     customer, amount and currency are the order's; payments refunds only
//     its own captures, for the amount it captured.
//
// An event that fails either check is terminated to the dead-letter stream
// (never applied), with a log line and a counter.

// ErrUnsealed is returned when an event carries no seal or a wrong one.
var ErrUnsealed = errors.New("event seal missing or wrong: not published by a payonce service")

// SealKey signs and checks event seals. The zero value refuses to seal and
// accepts nothing.
type SealKey struct{ key []byte }

// NewSealKey derives the event sealing key from the services' shared
// secret. Deriving (rather than using the secret itself) keeps the seal
// and the other uses of the secret (forwarding between instances,
// cursors) from being interchangeable.
func NewSealKey(secret string) SealKey {
	return SealKey{key: DeriveKey(secret, "event-seal")}
}

// DeriveKey returns the key for one purpose from the shared secret.
func DeriveKey(secret, purpose string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("payonce/" + purpose))
	return m.Sum(nil)
}

// sealable is an event whose meaningful fields can be sealed.
type sealable interface{ sealFields() []string }

func (k SealKey) mac(ev sealable) string {
	m := hmac.New(sha256.New, k.key)
	for _, f := range ev.sealFields() {
		// Length-prefixed: no choice of field values makes two events
		// seal the same bytes.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		m.Write(n[:])
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether seal is the right one for ev.
func (k SealKey) Verify(ev sealable, seal string) error {
	if len(k.key) == 0 || seal == "" {
		return ErrUnsealed
	}
	if !hmac.Equal([]byte(k.mac(ev)), []byte(seal)) {
		return ErrUnsealed
	}
	return nil
}

// SealOrderCreated returns ev with its seal set.
func (k SealKey) SealOrderCreated(ev OrderCreatedEvent) OrderCreatedEvent {
	ev.Seal = k.mac(ev)
	return ev
}

// SealPaymentOutcome returns ev with its seal set.
func (k SealKey) SealPaymentOutcome(ev PaymentOutcomeEvent) PaymentOutcomeEvent {
	ev.Seal = k.mac(ev)
	return ev
}

// SealRefundRequested returns ev with its seal set.
func (k SealKey) SealRefundRequested(ev RefundRequestedEvent) RefundRequestedEvent {
	ev.Seal = k.mac(ev)
	return ev
}

func (e OrderCreatedEvent) sealFields() []string {
	return []string{OrderCreated, e.EventID, e.OrderID, e.Caller, e.CustomerID, strconv.FormatInt(e.Amount, 10), e.Currency, e.Card}
}

func (e PaymentOutcomeEvent) sealFields() []string {
	return []string{"payments.outcome", e.EventID, e.PaymentID, e.OrderID, e.Caller, e.CustomerID,
		strconv.FormatInt(e.Amount, 10), e.Currency, e.Status, e.FailureReason}
}

func (e RefundRequestedEvent) sealFields() []string {
	return []string{OrderRefundRequested, e.EventID, e.OrderID, e.PaymentID, e.Caller, e.CustomerID,
		strconv.FormatInt(e.Amount, 10), e.Currency}
}

// paymentNamespace roots the name-based ids of payments; it is the payments
// service's, kept here because orders must derive the same id to check an
// outcome against the order it names.
var paymentNamespace = uuid.MustParse("3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21")

// PaymentIDForOrder names the one payment of an order. payments charges
// under this id; orders accepts an outcome for the order only under it.
func PaymentIDForOrder(orderID string) string {
	return uuid.NewSHA1(paymentNamespace, []byte("order\x00"+orderID)).String()
}
