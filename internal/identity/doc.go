// Package identity is payonce's security plumbing: who each internal party
// is, the small certificate authority that vouches for it in development,
// and the TLS configurations that make a connection prove it.
//
// Every party of the stack (each coordinator node, each service instance,
// the bank, the NATS server, the operator's CLI) holds one X.509
// certificate whose only URI subject alternative name is its identity:
//
//	spiffe://payonce/<service>/<instance>    e.g. spiffe://payonce/orders/orders-1
//
// This is the shape SPIFFE gives workload identities, so a fork can swap the
// dev CA for SPIRE, cert-manager or a company CA without changing how an
// identity is read. Both sides of every internal connection present a
// certificate (mutual TLS): the server learns who called from the verified
// chain, never from a header the caller chose, and authorisation rules
// beside what they protect (the coordinator's locks, a NATS user's
// subjects) are written against these identities.
//
// Certificates are read from files and re-read when the files change, so a
// rotated certificate is used from the next handshake on without a restart.
// docs/adr/0040-workload-identity.md records the choices.
package identity
