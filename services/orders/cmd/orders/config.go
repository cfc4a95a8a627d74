package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
)

// config is everything the orders service reads from its environment.
type config struct {
	// ORDERS_ADDR (":8080"): the HTTP listen address.
	Addr string
	// ORDERS_ADVERTISE_URL (http://127.0.0.1:<port of ORDERS_ADDR>): where
	// other instances reach this one when they forward a request to it.
	AdvertiseURL string
	// INSTANCE_ID (the host name): this instance's name on the ring.
	InstanceID string
	// ORDERS_DATABASE_URL (required) and MIGRATE_ON_START (true).
	DatabaseURL    string
	MigrateOnStart bool
	// NATS_URL ("nats://127.0.0.1:4222").
	NATSURL string
	// COORDINATOR_URLS (required): the coordinator nodes, comma-separated.
	CoordinatorURLs []string
	// ORDERS_API_KEYS (required): "caller:key,caller:key".
	APIKeys string
	// MEMBERSHIP_TTL (3s): how long after its last heartbeat a dead instance
	// keeps its customers; ownership moves within this time.
	MembershipTTL time.Duration
	// IDEMPOTENCY_RETENTION (24h) and IDEMPOTENCY_LOCK_TIMEOUT (30s).
	IdempotencyRetention   time.Duration
	IdempotencyLockTimeout time.Duration
	// SHUTDOWN_GRACE (10s).
	ShutdownGrace time.Duration
}

func loadConfig(getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	host, _ := os.Hostname()
	c := config{
		Addr:                   env.String("ORDERS_ADDR", ":8080"),
		InstanceID:             env.String("INSTANCE_ID", host),
		DatabaseURL:            env.Required("ORDERS_DATABASE_URL"),
		MigrateOnStart:         env.Bool("MIGRATE_ON_START", true),
		NATSURL:                env.String("NATS_URL", "nats://127.0.0.1:4222"),
		CoordinatorURLs:        env.List("COORDINATOR_URLS", nil),
		APIKeys:                env.Required("ORDERS_API_KEYS"),
		MembershipTTL:          env.Duration("MEMBERSHIP_TTL", 3*time.Second),
		IdempotencyRetention:   env.Duration("IDEMPOTENCY_RETENTION", 24*time.Hour),
		IdempotencyLockTimeout: env.Duration("IDEMPOTENCY_LOCK_TIMEOUT", 30*time.Second),
		ShutdownGrace:          env.Duration("SHUTDOWN_GRACE", 10*time.Second),
	}
	if len(c.CoordinatorURLs) == 0 {
		env.Required("COORDINATOR_URLS")
	}
	c.AdvertiseURL = env.String("ORDERS_ADVERTISE_URL", "")
	if err := env.Err(); err != nil {
		return c, err
	}
	if c.AdvertiseURL == "" {
		_, port, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return c, fmt.Errorf("ORDERS_ADDR=%q: %w", c.Addr, err)
		}
		c.AdvertiseURL = "http://127.0.0.1:" + port
	}
	return c, nil
}
