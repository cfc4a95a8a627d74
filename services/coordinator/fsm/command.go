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
)

// Command is one log entry's payload. Now is set by the leader when it
// proposes the entry, from its monotonic clock (nanoseconds from an arbitrary
// origin); replicas never consult their own clocks.
type Command struct {
	Op  Op    `json:"op"`
	Now int64 `json:"now"`

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
