package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
)

// config is everything the payments service reads from its environment,
// with the defaults that make `make dev` work as is.
type config struct {
	// PAYMENTS_ADDR (":8090"): the HTTP listen address.
	Addr string
	// INSTANCE_ID (the host name): names this instance in logs, traces,
	// membership and the Payonce-Instance response header.
	InstanceID string
	// PAYMENTS_DATABASE_URL (required): the payments database.
	DatabaseURL string
	// MIGRATE_ON_START (true): apply pending migrations at start-up.
	MigrateOnStart bool
	// NATS_URL ("nats://127.0.0.1:4222").
	NATSURL string
	// COORDINATOR_URLS (required): the coordinator nodes, comma-separated.
	CoordinatorURLs []string
	// BANK_URL ("http://127.0.0.1:8099") and BANK_TIMEOUT (5s).
	BankURL     string
	BankTimeout time.Duration
	// PAYMENTS_API_KEYS (required): "caller:key,caller:key".
	APIKeys string
	// PAYMENTS_PEER_API_KEY (required): the key instances use with each
	// other to hand an order to its customer's owner; it must be one of
	// PAYMENTS_API_KEYS, and only its caller may use the internal route.
	PeerAPIKey string
	// PAYMENTS_ADVERTISE_URL (http://127.0.0.1:<port of PAYMENTS_ADDR>):
	// where peers reach this instance.
	AdvertiseURL string
	// MEMBERSHIP_TTL (3s): how long a dead instance keeps its customers.
	MembershipTTL time.Duration
	// PAYMENTS_LOCK_TTL (15s): lease on a customer's lock while charging;
	// must exceed BANK_TIMEOUT. PAYMENTS_LOCK_WAIT (10s): how long to queue
	// behind another charge of the same customer.
	LockTTL  time.Duration
	LockWait time.Duration
	// PAYMENTS_RECOVERY_INTERVAL (2s) and PAYMENTS_RECOVERY_AFTER (20s):
	// how often the recovery worker looks, and how old an unfinished charge
	// must be before it is presumed abandoned.
	RecoveryInterval time.Duration
	RecoveryAfter    time.Duration
	// IDEMPOTENCY_RETENTION (24h) and IDEMPOTENCY_LOCK_TIMEOUT (30s).
	IdempotencyRetention   time.Duration
	IdempotencyLockTimeout time.Duration
	// SHUTDOWN_GRACE (10s): time in-flight requests get on SIGTERM.
	ShutdownGrace time.Duration
}

func loadConfig(getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	host, _ := os.Hostname()
	c := config{
		Addr:                   env.String("PAYMENTS_ADDR", ":8090"),
		InstanceID:             env.String("INSTANCE_ID", host),
		DatabaseURL:            env.Required("PAYMENTS_DATABASE_URL"),
		MigrateOnStart:         env.Bool("MIGRATE_ON_START", true),
		NATSURL:                env.String("NATS_URL", "nats://127.0.0.1:4222"),
		CoordinatorURLs:        env.List("COORDINATOR_URLS", nil),
		BankURL:                env.String("BANK_URL", "http://127.0.0.1:8099"),
		BankTimeout:            env.Duration("BANK_TIMEOUT", 5*time.Second),
		APIKeys:                env.Required("PAYMENTS_API_KEYS"),
		PeerAPIKey:             env.Required("PAYMENTS_PEER_API_KEY"),
		AdvertiseURL:           env.String("PAYMENTS_ADVERTISE_URL", ""),
		MembershipTTL:          env.Duration("MEMBERSHIP_TTL", 3*time.Second),
		LockTTL:                env.Duration("PAYMENTS_LOCK_TTL", 15*time.Second),
		LockWait:               env.Duration("PAYMENTS_LOCK_WAIT", 10*time.Second),
		RecoveryInterval:       env.Duration("PAYMENTS_RECOVERY_INTERVAL", 2*time.Second),
		RecoveryAfter:          env.Duration("PAYMENTS_RECOVERY_AFTER", 20*time.Second),
		IdempotencyRetention:   env.Duration("IDEMPOTENCY_RETENTION", 24*time.Hour),
		IdempotencyLockTimeout: env.Duration("IDEMPOTENCY_LOCK_TIMEOUT", 30*time.Second),
		ShutdownGrace:          env.Duration("SHUTDOWN_GRACE", 10*time.Second),
	}
	if len(c.CoordinatorURLs) == 0 {
		env.Required("COORDINATOR_URLS")
	}
	if err := env.Err(); err != nil {
		return c, err
	}
	if c.AdvertiseURL == "" {
		_, port, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return c, fmt.Errorf("PAYMENTS_ADDR=%q: %w", c.Addr, err)
		}
		c.AdvertiseURL = "http://127.0.0.1:" + port
	}
	return c, nil
}
