package fsm

import (
	"encoding/json"
	"time"
)

// Op names a kind of log entry.
type Op string

// The operations of the log. Tick carries only the leader's clock: it exists
// so that leases expire while nobody writes.
const (
	OpAcquire    Op = "acquire"
	OpKeepAlive  Op = "keepalive"
	OpRelease    Op = "release"
	OpCancelWait Op = "cancel-wait"
	OpTick       Op = "tick"
	OpRegister   Op = "register"
	OpHeartbeat  Op = "heartbeat"
	OpDeregister Op = "deregister"
	// OpInit fixes the cluster epoch; the first one applied wins, later
	// ones change nothing (see state.Epoch).
	OpInit Op = "init"
	// OpAdmit lets a node that came up with an empty data directory vote
	// again: Server's Incarnation is recorded, and the node, applying the
	// entry, recognises its own incarnation (see raftnode's joining mode).
	OpAdmit Op = "admit"
	// OpKeepAliveBatch renews many leases in one entry: a holder of many
	// partition leases pays one Raft write per renewal interval, however
	// many partitions it holds (ADR 0070).
	OpKeepAliveBatch Op = "keepalive-batch"
)

// LeaseRef names one lease of a batch: the lock and the lease id, as a
// single keepalive names them.
type LeaseRef struct {
	Lock    string `json:"lock"`
	LeaseID string `json:"lease"`
}

// Command is one log entry's payload. Now is set by the leader when it
// proposes the entry, from its monotonic clock (nanoseconds from an arbitrary
// origin); replicas never consult their own clocks.
type Command struct {
	Op  Op    `json:"op"`
	Now int64 `json:"now"`
	// Caller is the identity that sent the request (coordinator.Caller's
	// String, empty without TLS). A lease, a queued acquire and a member
	// entry record it, and only the same caller may change them.
	Caller string `json:"caller,omitempty"`
	// MaxLocks, on an acquire, is how many locks Caller may hold or wait
	// for at once, this one included (0: no limit). It travels in the entry
	// so every replica decides the same.
	MaxLocks int `json:"max_locks,omitempty"`

	Lock      string        `json:"lock,omitempty"`
	Owner     string        `json:"owner,omitempty"`
	RequestID string        `json:"rid,omitempty"`
	Attempt   uint64        `json:"attempt,omitempty"`
	LeaseID   string        `json:"lease,omitempty"`
	TTL       time.Duration `json:"ttl,omitempty"`
	Wait      time.Duration `json:"wait,omitempty"`

	Service  string `json:"svc,omitempty"`
	Instance string `json:"inst,omitempty"`
	Addr     string `json:"addr,omitempty"`

	Epoch       uint64 `json:"epoch,omitempty"`
	Server      string `json:"server,omitempty"`
	Incarnation string `json:"inc,omitempty"`

	// Leases are the leases a keepalive-batch renews, in order.
	Leases []LeaseRef `json:"leases,omitempty"`
}

// Encode serialises the command for the log.
func (c Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		// A Command has only strings and integers; Marshal cannot fail.
		panic(err)
	}
	return b
}

// Decode parses a command from a log entry.
func Decode(b []byte) (Command, error) {
	var c Command
	err := json.Unmarshal(b, &c)
	return c, err
}
