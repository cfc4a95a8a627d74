package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/platform"
	"github.com/payonce/payonce/internal/quota"
)

// config is everything the payments service reads from its environment,
// with the defaults that make `make dev` work as is. The variables every
// service shares (PAYMENTS_DATABASE_URL, NATS_URL, COORDINATOR_URLS,
// INSTANCE_ID, ...) are listed at platform.ReadConfig.
type config struct {
	platform.Config
	// PAYMENTS_ADDR (":8090"): the HTTP listen address.
	Addr string
	// BANK_URL ("http://127.0.0.1:8099") and BANK_TIMEOUT (5s). With
	// TLS_* an https:// bank is called with the instance's certificate and
	// must prove it is the bank; outside dev mode a plain http:// one is
	// then refused at start-up (card numbers would cross in clear).
	BankURL     string
	BankTimeout time.Duration
	// PAYMENTS_API_KEYS (required): "caller:key,caller:key".
	APIKeys string
	// PAYMENTS_PEER_API_KEY (required): the key instances use with each
	// other to hand an order to its customer's owner; it must be one of
	// PAYMENTS_API_KEYS, and only its caller may use the internal route.
	PeerAPIKey string
	// PAYMENTS_LOCK_TTL (15s): lease on a customer's lock while charging;
	// must exceed BANK_TIMEOUT. PAYMENTS_LOCK_WAIT (10s): how long to queue
	// behind another charge of the same customer.
	LockTTL  time.Duration
	LockWait time.Duration
	// PAYMENTS_OWNERSHIP ("partition"): how a charge is serialised and
	// fenced (ADR 0070). "partition": this instance leases the ring
	// partitions it owns, renews them all in one coordinator write per
	// PAYMENTS_PARTITION_TTL/3, and charges with no coordinator round trip;
	// charges and refunds are forwarded to their partition's owner.
	// "lock": a per-customer lock from the coordinator for every charge
	// (PAYMENTS_LOCK_TTL, PAYMENTS_LOCK_WAIT).
	Ownership string
	// PAYMENTS_PARTITION_TTL (6s): the partition leases' TTL. An instance
	// cut off from the coordinator stops charging within it, and a dead
	// one's partitions are taken over within it (plus one coordinator
	// tick, and one election if the coordinators lose their leader): under
	// the partition design MEMBERSHIP_TTL is capped at this TTL, because a
	// dead instance's partitions move only once its member entry too has
	// run out (issue #14).
	// PAYMENTS_PARTITION_DRAIN (5s): how long work in flight on a
	// partition moving away may take before its lease is released anyway.
	PartitionTTL   time.Duration
	PartitionDrain time.Duration
	// PAYMENTS_RECOVERY_INTERVAL (2s) and PAYMENTS_RECOVERY_AFTER (20s):
	// how often the recovery worker looks, and how old an unfinished charge
	// must be before it is presumed abandoned.
	RecoveryInterval time.Duration
	RecoveryAfter    time.Duration
	// SHUTDOWN_GRACE (10s): time in-flight requests get on SIGTERM.
	ShutdownGrace time.Duration
	// INTERNAL_SECRET (DevInternalSecret): the secret orders and payments
	// share, from which the event seal, the forwarding signature and the
	// cursor key are derived. The default is public: set your own.
	InternalSecret string
	// PAYMENTS_RATE_LIMIT (200) requests per second per caller, with bursts of
	// PAYMENTS_RATE_BURST (400); PAYMENTS_KEYS_PER_DAY (100000) distinct
	// idempotency keys per caller per UTC day. Per instance; 0 disables.
	// Beyond them: 429 with Retry-After (internal/quota).
	Quota quota.Limits
}

func loadConfig(getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	c := config{
		Addr:             env.String("PAYMENTS_ADDR", ":8090"),
		BankURL:          env.String("BANK_URL", "http://127.0.0.1:8099"),
		BankTimeout:      env.Duration("BANK_TIMEOUT", 5*time.Second),
		APIKeys:          env.Required("PAYMENTS_API_KEYS"),
		PeerAPIKey:       env.Required("PAYMENTS_PEER_API_KEY"),
		LockTTL:          env.Duration("PAYMENTS_LOCK_TTL", 15*time.Second),
		LockWait:         env.Duration("PAYMENTS_LOCK_WAIT", 10*time.Second),
		Ownership:        env.String("PAYMENTS_OWNERSHIP", "partition"),
		PartitionTTL:     env.Duration("PAYMENTS_PARTITION_TTL", 6*time.Second),
		PartitionDrain:   env.Duration("PAYMENTS_PARTITION_DRAIN", 5*time.Second),
		RecoveryInterval: env.Duration("PAYMENTS_RECOVERY_INTERVAL", 2*time.Second),
		RecoveryAfter:    env.Duration("PAYMENTS_RECOVERY_AFTER", 20*time.Second),
		Quota: quota.Limits{
			Rate:       float64(env.Int("PAYMENTS_RATE_LIMIT", 200)),
			Burst:      env.Int("PAYMENTS_RATE_BURST", 400),
			KeysPerDay: env.Int("PAYMENTS_KEYS_PER_DAY", 100000),
		},
		InternalSecret: env.String("INTERNAL_SECRET", apikey.DevInternalSecret),
		ShutdownGrace:  env.Duration("SHUTDOWN_GRACE", 10*time.Second),
	}
	c.Config = platform.ReadConfig(env, "payments", c.Addr)
	if err := env.Err(); err != nil {
		return c, err
	}
	if c.TLS != nil && !c.DevMode && !strings.HasPrefix(c.BankURL, "https://") {
		return c, fmt.Errorf("BANK_URL=%q: TLS_* set: outside dev mode the bank is called over mutual TLS; want https://", c.BankURL)
	}
	if c.Ownership != "partition" && c.Ownership != "lock" {
		return c, fmt.Errorf("PAYMENTS_OWNERSHIP=%q: must be partition or lock", c.Ownership)
	}
	if c.Ownership == "partition" && c.MembershipTTL > c.PartitionTTL {
		// The survivor takes a dead owner's partitions when the ring drops
		// it, i.e. when its member entry expires: a member entry that
		// outlived the leases would hold the takeover past the lease TTL.
		c.MembershipTTL = c.PartitionTTL
	}
	return c, nil
}
