// Package httpkit holds the HTTP conventions every payonce service shares:
// one error encoder that turns an internal/errs kind into an RFC 9457
// application/problem+json document, strict JSON request decoding with a body
// size limit, liveness and readiness probes, and graceful shutdown.
//
// It is the transport floor beneath each service's go-kit transport package:
// go-kit decides how an endpoint is exposed, httpkit decides what every
// response looks like when something goes wrong, so a client sees the same
// problem shape and status mapping from orders, payments and the coordinator.
package httpkit
