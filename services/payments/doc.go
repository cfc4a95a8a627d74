// Package payments is the domain of the payments service: what a payment
// is, the states it moves through, and the one procedure that charges it,
// which every entry point shares (an API request, an orders.created event,
// a client's retry, the recovery worker).
//
// Exactly one charge per intent comes from three keys that line up:
//
//   - the payment's id is derived from the intent (the caller's
//     Idempotency-Key, or the order id), so every attempt at the same
//     intent finds the same payment row instead of creating another;
//   - the bank call carries its own idempotency key derived from the
//     payment (BankKey), so repeating the call after a crash or a lost
//     response returns the first charge instead of making a second;
//   - every write of the charge passes the customer's fencing token
//     through the Postgres fence, so a process whose lock lease expired
//     while it was paused cannot overwrite the work of the newer holder.
//
// The payment row's status is the recovery point: authorizing (the intent,
// recorded under the customer's lease, about to call or calling the bank),
// then succeeded or failed. Whoever picks up an unfinished payment (a retry
// or the recovery worker) continues from its status and never starts over.
//
// This package imports no pgx, NATS, net/http or raft: the store, the lock
// client and the bank client are interfaces that leaf packages implement.
package payments
