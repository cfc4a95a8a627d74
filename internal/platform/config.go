package platform

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/pkg/idempotency"
)

// ReadConfig reads the variables every service shares, for a service
// listening on addr. With <SERVICE> the upper-cased service name:
//
//	<SERVICE>_DATABASE_URL   (required) the service's own database
//	<SERVICE>_ADVERTISE_URL  (http://127.0.0.1:<port of addr>) where peers reach this instance
//	INSTANCE_ID              (the host name) this instance's name on the ring
//	MIGRATE_ON_START         (true) apply pending migrations at start-up
//	NATS_URL                 (nats://127.0.0.1:4222)
//	COORDINATOR_URLS         (required) the coordinator nodes, comma-separated
//	MEMBERSHIP_TTL           (3s) how long a dead instance keeps its customers
//	IDEMPOTENCY_RETENTION    (24h) how long a key's answer is replayed
//	IDEMPOTENCY_LOCK_TIMEOUT (30s) how long before a silent holder's key is taken over
//
// Errors are recorded in env, to be reported with the service's own.
func ReadConfig(env *envconfig.Reader, service, addr string) Config {
	prefix := strings.ToUpper(service)
	host, _ := os.Hostname()
	c := Config{
		Service:         service,
		InstanceID:      env.String("INSTANCE_ID", host),
		DatabaseURL:     env.Required(prefix + "_DATABASE_URL"),
		MigrateOnStart:  env.Bool("MIGRATE_ON_START", true),
		NATSURL:         env.String("NATS_URL", "nats://127.0.0.1:4222"),
		CoordinatorURLs: env.List("COORDINATOR_URLS", nil),
		MembershipTTL:   env.Duration("MEMBERSHIP_TTL", 3*time.Second),
		Idempotency: idempotency.Config{
			Retention:   env.Duration("IDEMPOTENCY_RETENTION", idempotency.DefaultRetention),
			LockTimeout: env.Duration("IDEMPOTENCY_LOCK_TIMEOUT", idempotency.DefaultLockTimeout),
		},
	}
	if len(c.CoordinatorURLs) == 0 {
		env.Required("COORDINATOR_URLS")
	}
	c.AdvertiseURL = env.String(prefix+"_ADVERTISE_URL", "")
	if c.AdvertiseURL == "" {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			env.Fail(fmt.Errorf("%s_ADDR=%q: %w", prefix, addr, err))
		}
		c.AdvertiseURL = "http://127.0.0.1:" + port
	}
	return c
}
