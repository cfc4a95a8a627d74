// Package orders is the domain of the orders service: an order, its lines
// and total, and the state machine it moves through.
//
//	pending_payment ──payment succeeded──> paid
//	       │        ──payment failed─────> payment_failed
//	       └────────cancel───────────────> cancelled
//
// Every other move is illegal and refused. The total is computed here from
// the catalog's prices, never taken from the client. Creating an order
// writes the order and its orders.created event in one transaction (the
// outbox), so the event exists exactly when the order does; a payment
// outcome moves the order through the inbox, so a redelivered outcome is
// recognised and moves nothing a second time.
//
// This package imports no pgx, NATS or net/http: the store is an interface
// that services/orders/postgres implements.
package orders
