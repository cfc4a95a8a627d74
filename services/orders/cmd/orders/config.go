package main

import (
	"time"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/platform"
	"github.com/payonce/payonce/internal/quota"
)

// config is everything the orders service reads from its environment. The
// variables every service shares (ORDERS_DATABASE_URL, NATS_URL,
// COORDINATOR_URLS, INSTANCE_ID, ...) are listed at platform.ReadConfig.
type config struct {
	platform.Config
	// ORDERS_ADDR (":8080"): the HTTP listen address.
	Addr string
	// ORDERS_API_KEYS (required): "caller:key,caller:key".
	APIKeys string
	// SHUTDOWN_GRACE (10s): time in-flight requests get on SIGTERM.
	ShutdownGrace time.Duration
	// ORDERS_PAYMENTS_URL (none): the payments API the reconciliation
	// sweeper asks about orders left pending; empty turns the sweeper off.
	PaymentsURL string
	// ORDERS_PAYMENTS_API_KEY (none): orders' key at payments.
	PaymentsAPIKey string
	// ORDERS_RECONCILE_AFTER (2m): how long an order may stay
	// pending_payment before the sweeper looks into it (and between looks).
	ReconcileAfter time.Duration
	// ORDERS_RECONCILE_INTERVAL (10s): how often the sweeper runs.
	ReconcileInterval time.Duration
	// INTERNAL_SECRET (DevInternalSecret): the secret orders and payments
	// share, from which the event seal, the forwarding signature and the
	// cursor key are derived. The default is public: set your own.
	InternalSecret string
	// ORDERS_RATE_LIMIT (200) requests per second per caller, with bursts of
	// ORDERS_RATE_BURST (400); ORDERS_KEYS_PER_DAY (100000) distinct
	// idempotency keys per caller per UTC day. Per instance; 0 disables.
	// Beyond them: 429 with Retry-After (internal/quota).
	Quota quota.Limits
}

func loadConfig(getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	c := config{
		Addr:    env.String("ORDERS_ADDR", ":8080"),
		APIKeys: env.Required("ORDERS_API_KEYS"),
		Quota: quota.Limits{
			Rate:       float64(env.Int("ORDERS_RATE_LIMIT", 200)),
			Burst:      env.Int("ORDERS_RATE_BURST", 400),
			KeysPerDay: env.Int("ORDERS_KEYS_PER_DAY", 100000),
		},
		InternalSecret: env.String("INTERNAL_SECRET", apikey.DevInternalSecret),
		ShutdownGrace:  env.Duration("SHUTDOWN_GRACE", 10*time.Second),

		PaymentsURL:       env.String("ORDERS_PAYMENTS_URL", ""),
		PaymentsAPIKey:    env.String("ORDERS_PAYMENTS_API_KEY", ""),
		ReconcileAfter:    env.Duration("ORDERS_RECONCILE_AFTER", 2*time.Minute),
		ReconcileInterval: env.Duration("ORDERS_RECONCILE_INTERVAL", 10*time.Second),
	}
	c.Config = platform.ReadConfig(env, "orders", c.Addr)
	return c, env.Err()
}
