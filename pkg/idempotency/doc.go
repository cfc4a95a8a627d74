// Package idempotency makes HTTP requests with outside effects safe to
// retry: a client sends a unique Idempotency-Key with each intent ("charge
// this card for this order"), and however many times the request arrives,
// through retries after timeouts, double clicks or a proxy resending, the
// intent is carried out once and every attempt gets the same answer.
//
// # Why retries need keys
//
// A client whose request timed out cannot know whether the server never saw
// it, failed half-way, or succeeded and lost the reply. Its only safe move
// is to retry, and a retry is only safe if the server can tell it from a
// new request. A key chosen by the client (a UUID per intent) lets the
// server recognise the retry: the first request with a key is executed and
// its response stored; later ones get the stored response back, marked
// Idempotent-Replayed: true. This follows the IETF draft
// draft-ietf-httpapi-idempotency-key-header and Stripe's API.
//
// # What the middleware adds
//
// Keys are scoped to the authenticated caller (Options.Scope), so two
// callers who pick the same key never see each other's data. Each key is
// bound to a fingerprint of the request (method, concrete path, query and the body
// in canonical JSON form, FingerprintOf), so a key reused for a different
// request is refused with 422 instead of replaying an answer to another
// question. A request arriving while the first with its key is still
// running gets 409 with Retry-After (or, with Options.WaitInFlight, waits
// for the first to finish). Without a key, POST and PATCH get 400.
//
// # Claims, leases and takeover
//
// A request becomes the key's holder through one INSERT ... ON CONFLICT
// statement, so exactly one of any number of concurrent requests wins. The
// holder has a lease whose end is computed by the database clock. If the
// holder dies (the process is killed, the machine lost), its lease runs out
// and the next retry takes the key over. Every write the holder makes
// through Key.Phase first checks that it still holds the key, so a holder
// that was only slow, not dead, finds its next phase refused (ErrKeyLost)
// and cannot write behind the new holder's back.
//
// # Recovery points: Stripe's atomic phases
//
// A payment is several steps: record it, call the bank, record the result.
// Starting over after a crash would call the bank twice. So the handler
// runs its work in atomic phases: Key.Phase runs a function in one
// database transaction together with the move of the key's recovery point
// (a name the handler chooses, like "payment_recorded"). The recovery point
// thus always tells truthfully how far the work got, and a takeover
// resumes there (Key.RecoveryPoint) instead of at the start. Calls to other
// systems happen between phases and carry their own idempotency key
// (Key.Derive), because a takeover may repeat the call that the dead holder
// made but did not record. Brandur Leach describes this design, used at
// Stripe, in "Implementing Stripe-like Idempotency Keys in Postgres".
//
// The last phase may be Key.FinalPhase (FinalTx in a store): its
// transaction stays open until the middleware stores the response in it,
// so the work and the answer commit together, one disk flush instead of
// two. What must wait for that commit registers with OnCommit, what must
// wait for the phase to end either way (releasing a lease) with AfterTx.
//
// # Failures: the 5xx policy
//
// A 2xx, 3xx or 4xx response is the answer to the intent and is stored.
// A 5xx is not an answer but a failure of ours, and it is never replayed:
// if it happened before any phase committed, the key is deleted and a retry
// runs afresh; if a phase had committed, the key stays at its recovery point
// and the retry rolls the work forward to a real answer. (Stripe replays
// 5xx responses; payonce prefers that a retry can heal.) 408, 425 and 429
// are treated like 5xx, since they ask the client to retry.
//
// # Retention
//
// A key is kept for the Retention period (24 hours by default) from its
// first request, and every response carries Idempotency-Key-Expires with
// its end. After that the stored response is dropped by DeleteExpired, but
// a tombstone of the key is kept for TombstonePeriod (7 days by default),
// and a retry in that time is refused with 422 idempotency-key-expired
// instead of being executed a second time. docs/idempotency.md explains
// the choice and names the test behind every claim above.
//
// # Use
//
//	store := idempotency.NewStore(pool, idempotency.Config{})
//	idem, err := idempotency.NewMiddleware(store, idempotency.Options{Scope: callerOf})
//	mux.Handle("POST /v1/payments", idem.Wrap(createPaymentHandler))
//	go store.RunCleanup(ctx, time.Hour)
//
// and in the handler (or the service below it):
//
//	key := idempotency.FromContext(ctx)
//	if key.RecoveryPoint() == idempotency.InitialRecoveryPoint {
//		err := key.Phase(ctx, func(tx pgx.Tx) (string, error) {
//			// insert the payment row
//			return "payment_recorded", nil
//		})
//	}
//	// ... and so on, one case per recovery point.
package idempotency
