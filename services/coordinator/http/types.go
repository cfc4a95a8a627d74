package http

import (
	"net/http"
	"time"

	"github.com/payonce/payonce/services/coordinator"
)

// acquireRequest is the body of POST /v1/locks/{lock}/leases.
type acquireRequest struct {
	lock       string
	RequestID  string `json:"request_id"`
	Attempt    uint64 `json:"attempt,omitempty"`
	Owner      string `json:"owner,omitempty"`
	TTLMillis  int64  `json:"ttl_ms"`
	WaitMillis int64  `json:"wait_ms,omitempty"`
}

type leaseRef struct{ lock, leaseID string }

type lockRef struct {
	lock  string
	stale bool
}

// registerRequest is the body of PUT /v1/services/{service}/members/{instance}.
type registerRequest struct {
	service, instance string
	Addr              string `json:"addr"`
	TTLMillis         int64  `json:"ttl_ms"`
}

type memberRef struct{ service, instance string }

type membersRequest struct {
	service     string
	waitVersion uint64
	timeout     time.Duration
	stale       bool
}

// LeaseResponse is a lease as the API shows it.
type LeaseResponse struct {
	// LeaseID is shown to the lease's holder only (empty to others).
	LeaseID         string `json:"lease_id,omitempty"`
	Lock            string `json:"lock"`
	Owner           string `json:"owner,omitempty"`
	Token           uint64 `json:"token"`
	Epoch           uint64 `json:"epoch"`
	TTLMillis       int64  `json:"ttl_ms"`
	RemainingMillis int64  `json:"remaining_ms"`
}

func leaseResponseOf(l coordinator.Lease) LeaseResponse {
	return LeaseResponse{
		LeaseID: l.ID, Lock: l.Lock, Owner: l.Owner, Token: uint64(l.Token), Epoch: l.Epoch,
		TTLMillis: l.TTL.Milliseconds(), RemainingMillis: l.Remaining.Milliseconds(),
	}
}

type lockResponse struct {
	Name    string         `json:"name"`
	Holder  *LeaseResponse `json:"holder,omitempty"`
	Waiters int            `json:"waiters"`
}

type memberResponse struct {
	Service   string `json:"service"`
	Instance  string `json:"instance"`
	Addr      string `json:"addr"`
	TTLMillis int64  `json:"ttl_ms"`
}

func memberResponseOf(m coordinator.Member) memberResponse {
	return memberResponse{Service: m.Service, Instance: m.Instance, Addr: m.Addr, TTLMillis: m.TTL.Milliseconds()}
}

type membersResponse struct {
	Service string           `json:"service"`
	Version uint64           `json:"version"`
	Members []memberResponse `json:"members"`
	// Ring is the encoded ring.Snapshot (base64 in JSON); decode it with
	// ring.Decode rather than building a ring from Members (ADR 0003).
	Ring []byte `json:"ring,omitempty"`
	// RingFingerprint is the ring's Fingerprint as 16 hex digits: a JSON
	// number would lose bits in clients that parse numbers as doubles.
	RingFingerprint string `json:"ring_fingerprint,omitempty"`
}

// created answers 201 with the wrapped body.
type created struct{ LeaseResponse }

func (created) StatusCode() int { return http.StatusCreated }

// noContent answers 204.
type noContent struct{}

func (noContent) StatusCode() int { return http.StatusNoContent }
