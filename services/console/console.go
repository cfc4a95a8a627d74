package console

import (
	"context"
	"errors"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/pkg/ring"
)

// ErrDevModeOff is returned by every action when the console does not run in
// dev mode: a console pointed at a real deployment only looks.
var ErrDevModeOff = errors.New("actions are refused: the console is not in dev mode (CONSOLE_DEV_MODE=true, dev stacks only)")

// ErrNoControl is returned by process actions (kill the leader, stop or pause
// an instance) when no dev stack control endpoint is configured, as under
// docker compose, where the page shows the commands to run instead.
var ErrNoControl = errs.E(errs.Unavailable, "no dev stack control endpoint (CONSOLE_CONTROL_URL): under docker compose, run the commands the page shows")

// View is everything the page shows at one instant.
type View struct {
	// At is when the console finished reading the stack for this view.
	At time.Time `json:"at"`
	// Seq numbers the views; the page uses it to count updates.
	Seq uint64 `json:"seq"`
	// ReadMS is how long reading the stack for this view took.
	ReadMS int64 `json:"read_ms"`
	// DevMode tells the page whether to offer actions at all.
	DevMode bool `json:"dev_mode"`
	// Control tells whether process actions go through a dev stack control
	// endpoint; when false the page shows documented commands instead.
	Control bool `json:"control"`
	// JaegerURL is the base of trace links, or "" when there is no Jaeger UI.
	JaegerURL string `json:"jaeger_url,omitempty"`
	// Traces tells whether the console can draw a trace inline
	// (GET /api/traces/{id}).
	Traces bool `json:"traces"`
	// Coordinators is each coordinator node's own view; LeaderID the leader
	// most nodes report.
	Coordinators []CoordinatorNode `json:"coordinators"`
	LeaderID     string            `json:"leader_id"`
	// Partitions are the payments partitions' leases as the leader's
	// replica sees them: under the partition design (ADR 0070) one entry
	// per partition, all customer.Partitions (64) of them, in partition
	// order, free ones without a holder; otherwise none.
	Partitions []PartitionLease `json:"partitions"`
	// Locks are the other held locks (the per-key design's customer
	// locks), and for a while the ones released since: at most 20.
	Locks []LockView `json:"locks"`
	// Rings has one entry per partitioned service (orders, payments).
	Rings []RingView `json:"rings"`
	// Orders and Payments are the latest of the watched customers, newest
	// first, each with the state changes the console saw.
	Orders   []Record `json:"orders"`
	Payments []Record `json:"payments"`
	// Idempotency is the idempotency middleware's counters, per instance.
	Idempotency []IdempotencyCounts `json:"idempotency"`
	// FenceRefusals are the payments instances' reports of the writes their
	// fence refused, the last one first.
	FenceRefusals []FenceRefusals `json:"fence_refusals"`
	// Keys are the idempotency keys the console itself sent (its storms), and
	// how each request with them was answered.
	Keys []KeyCounts `json:"keys"`
	// Storms are the latest retry storms and their results.
	Storms []StormResult `json:"storms"`
	// Bank is the simulated bank's fault switches and effect counts.
	Bank BankView `json:"bank"`
	// Processes are the dev stack's processes (with a control endpoint).
	Processes []Process `json:"processes,omitempty"`
	// Databases are the services' databases, and whether one was stopped
	// from the console (with a control endpoint).
	Databases []Database `json:"databases,omitempty"`
	// Problems lists what could not be read this round (a killed node, say).
	Problems []string `json:"problems"`
}

// CoordinatorNode is one coordinator node as the console reached it.
type CoordinatorNode struct {
	URL string `json:"url"`
	// Up is false when the node did not answer; its status is then empty.
	Up bool `json:"up"`
	NodeStatus
}

// NodeStatus is a coordinator node's own view of the Raft cluster
// (GET /v1/cluster/node).
type NodeStatus struct {
	ID           string     `json:"id"`
	State        string     `json:"state"`
	Term         uint64     `json:"term"`
	LastLogIndex uint64     `json:"last_log_index"`
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	LeaderID     string     `json:"leader_id"`
	Voters       []string   `json:"voters"`
	Locks        []LockView `json:"locks"`
}

// LockView is a held lock: its holder, fencing token and remaining TTL.
type LockView struct {
	Name    string `json:"name"`
	Waiters int    `json:"waiters"`
	// Released is set by the console on a lock it saw held a moment ago and
	// no longer sees: a charge is short, and a learner should still see its
	// token.
	Released bool        `json:"released,omitempty"`
	Holder   *LockHolder `json:"holder,omitempty"`
}

// LockHolder is a lock's current lease: who holds it, the fencing token of
// the grant, its TTL and how much of it is left unless renewed.
type LockHolder struct {
	Owner       string `json:"owner"`
	Token       uint64 `json:"token"`
	TTLMS       int64  `json:"ttl_ms"`
	RemainingMS int64  `json:"remaining_ms"`
}

// PartitionLease is one payments partition's lease: the instance holding
// it, the fencing token of its grant and how long it has left unless
// renewed. Holder is "" while the partition is free (between an expiry and
// the next grant). The JSON is terse on purpose: a view carries 64 of them
// twice a second.
type PartitionLease struct {
	Partition   int    `json:"p"`
	Holder      string `json:"holder,omitempty"`
	Token       uint64 `json:"token,omitempty"`
	TTLMS       int64  `json:"ttl_ms,omitempty"`
	RemainingMS int64  `json:"remaining_ms,omitempty"`
	Waiters     int    `json:"waiters,omitempty"`
}

// Instance is one registered instance of a service.
type Instance struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// Membership is a service's instances and the ring the coordinator keeps
// for them.
type Membership struct {
	Service   string
	Version   uint64
	Instances []Instance
	// Ring is nil when the service has no members.
	Ring *ring.Snapshot
}

// RingView is a service's ring as the page draws it.
type RingView struct {
	Service     string `json:"service"`
	Version     uint64 `json:"version"`
	Fingerprint string `json:"fingerprint"`
	// Members are the instances in ring order; Owners[slot] indexes them.
	Members []RingMember `json:"members"`
	Owners  []int        `json:"owners"`
	// Moved are the slots that changed owner at the last membership change,
	// and MovedAt when that was seen (the page animates them for a while).
	Moved   []int     `json:"moved"`
	MovedAt time.Time `json:"moved_at,omitzero"`
}

// RingMember is one instance on the ring and how many slots it owns.
type RingMember struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Slots int    `json:"slots"`
}

// Record is an order or a payment and the states the console saw it in.
type Record struct {
	ID         string       `json:"id"`
	CustomerID string       `json:"customer_id"`
	Status     string       `json:"status"`
	Amount     int64        `json:"amount"`
	Currency   string       `json:"currency"`
	Link       string       `json:"link,omitempty"` // the payment of an order
	TraceID    string       `json:"trace_id,omitempty"`
	Timeline   []Transition `json:"timeline"`
	// Stale is set when its service did not answer this round: the record
	// is the one read last (its database may be down for a while).
	Stale bool `json:"stale,omitempty"`
}

// Transition is a state a record was first seen in, and when.
type Transition struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// IdempotencyCounts are one instance's idempotency middleware decisions,
// from its /metrics: first answers (claimed), replays of a stored answer,
// and conflicts (409 in flight, 422 key reused with another request).
type IdempotencyCounts struct {
	Instance   string `json:"instance"`
	First      int64  `json:"first"`
	Replayed   int64  `json:"replayed"`
	InFlight   int64  `json:"in_flight"`
	Mismatched int64  `json:"mismatched"`
}

// InstanceMetrics is what the console reads from one instance's /metrics.
type InstanceMetrics struct {
	Idempotency IdempotencyCounts
	// Fence is set when the instance reports fence refusals (payments).
	Fence *FenceRefusals
}

// FenceRefusals is what one payments instance reports of the writes its
// fence refused: a writer whose lease had ended presented a token lower
// than one the fence had already seen, so PostgreSQL refused the write
// (docs/fencing-tokens.md).
type FenceRefusals struct {
	Instance string `json:"instance"`
	// Refused counts the refused writes since the instance started.
	Refused int64 `json:"refused"`
	// LastAt is when the last one was refused; LastToken the token it
	// carried; FenceToken the higher token the fence held then (the newer
	// holder's), 0 if unknown.
	LastAt     time.Time `json:"last_at,omitzero"`
	LastToken  uint64    `json:"last_token,omitempty"`
	FenceToken uint64    `json:"fence_token,omitempty"`
}

// KeyCounts is how the requests the console sent with one key were answered.
type KeyCounts struct {
	Key        string `json:"key"`
	First      int    `json:"first"`
	Replayed   int    `json:"replayed"`
	InFlight   int    `json:"in_flight"`
	Mismatched int    `json:"mismatched"`
	Failed     int    `json:"failed"`
}

// BankFaults are the simulated bank's fault switches (PUT /admin/faults).
type BankFaults struct {
	LatencyMS        int64    `json:"latency_ms"`
	ErrorRate        float64  `json:"error_rate"`
	LoseResponseRate float64  `json:"lose_response_rate"`
	FailNext         int      `json:"fail_next"`
	LoseNext         int      `json:"lose_next"`
	DeclineCards     []string `json:"decline_cards"`
}

// BankView is the bank's fault switches and how many charges it captured.
type BankView struct {
	Faults   BankFaults `json:"faults"`
	Captures int        `json:"captures"`
}

// Process is one process of the dev stack, as its control endpoint lists it.
type Process struct {
	Name    string `json:"name"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Paused  bool   `json:"paused"`
}

// Database is a service's database as the dev stack's control endpoint
// lists it: Stopped while it refuses connections, until Until.
type Database struct {
	Name    string    `json:"name"`
	Stopped bool      `json:"stopped"`
	Until   time.Time `json:"until,omitzero"`
}

// Order is an order as the orders API answers it (the fields the console uses).
type Order struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	Total      int64     `json:"total"`
	Currency   string    `json:"currency"`
	PaymentID  string    `json:"payment_id"`
	CreatedAt  time.Time `json:"created_at"`
}

// Payment is a payment as the payments API answers it.
type Payment struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	OrderID    string    `json:"order_id"`
	Status     string    `json:"status"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	CreatedAt  time.Time `json:"created_at"`
}

// Answer classifies how the orders API answered one create request, in the
// idempotency draft's terms.
type Answer int

// The answers a create request can get.
const (
	// AnswerFailed is anything else: a network error, a 5xx, a refusal.
	AnswerFailed Answer = iota
	// AnswerFirst is the request that ran: 201 without Idempotent-Replayed.
	AnswerFirst
	// AnswerReplayed is the stored answer again: 201, Idempotent-Replayed: true.
	AnswerReplayed
	// AnswerInFlight is 409: the first request with the key still runs.
	AnswerInFlight
	// AnswerMismatched is 422: the key was used with another request.
	AnswerMismatched
)

// OrderReply is how the orders API answered one create request.
type OrderReply struct {
	Answer Answer
	// Order is the order created or replayed (AnswerFirst, AnswerReplayed).
	Order Order
}

// Stack is what the console reads from (and, in dev mode, does to) the
// running stack, through its public and admin APIs.
type Stack interface {
	// CoordinatorURLs lists the coordinator nodes' base URLs.
	CoordinatorURLs() []string
	// NodeStatus asks one coordinator node for its own view.
	NodeStatus(ctx context.Context, coordinatorURL string) (NodeStatus, error)
	// Membership reads a service's members and ring from the coordinators.
	Membership(ctx context.Context, service string) (Membership, error)
	// Metrics reads an instance's idempotency counters, and its fence
	// refusals if it reports any, from its /metrics.
	Metrics(ctx context.Context, inst Instance) (InstanceMetrics, error)
	// CustomerOrders and CustomerPayments list a customer's latest records,
	// as the demo caller, through the instance at addr.
	CustomerOrders(ctx context.Context, addr, customerID string) ([]Order, error)
	CustomerPayments(ctx context.Context, addr, customerID string) ([]Payment, error)
	// CreateOrder sends one create-order request with key, carrying the
	// W3C traceparent given, through the instance at addr.
	CreateOrder(ctx context.Context, addr, key, traceparent string, body []byte) (OrderReply, error)
	// GetOrder reads an order through the instance at addr.
	GetOrder(ctx context.Context, addr, id string) (Order, error)
	// BankFaults and SetBankFaults read and replace the bank's fault switches.
	BankFaults(ctx context.Context) (BankFaults, error)
	SetBankFaults(ctx context.Context, f BankFaults) error
	// BankCaptures counts the captures the bank applied, all of them when
	// reference is "", else those for one payment.
	BankCaptures(ctx context.Context, reference string) (int, error)
	// Trace fetches one trace, as Jaeger's query API or the dev stack's
	// sink answers it; ErrNoTraces when neither is configured.
	Trace(ctx context.Context, traceID string) ([]byte, error)
}

// ErrNoTraces is returned by Stack.Trace when no trace source is configured.
var ErrNoTraces = errs.E(errs.NotFound, "no trace source configured (CONSOLE_TRACES_URL)")

// Control is the dev stack's control endpoint: process-level actions that
// only a dev stack allows.
type Control interface {
	Processes(ctx context.Context) ([]Process, error)
	// KillLeader SIGKILLs the coordinator that leads now and names it.
	KillLeader(ctx context.Context) (string, error)
	// Start restarts a stopped process; Stop stops one gracefully.
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	// Pause freezes a process (SIGSTOP) for d, then resumes it.
	Pause(ctx context.Context, name string, d time.Duration) error
	// Databases lists the services' databases.
	Databases(ctx context.Context) ([]Database, error)
	// StopDatabase makes a service's database refuse connections for d
	// (and ends those it has); StartDatabase gives it back before that.
	StopDatabase(ctx context.Context, name string, d time.Duration) error
	StartDatabase(ctx context.Context, name string) error
}
