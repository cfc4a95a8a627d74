package platform

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/pkg/idempotency"
)

// ReadConfig reads the variables every service shares, for a service
// listening on addr. With <SERVICE> the upper-cased service name:
//
//	<SERVICE>_DATABASE_URL   (required) the service's own database, as its own role
//	<SERVICE>_DATABASE_PASSWORD (empty) that role's password, put into the URL;
//	                         give it as <SERVICE>_DATABASE_PASSWORD_FILE (any variable may be a _FILE)
//	<SERVICE>_DATABASE_MAX_CONNS (16) the connection pool's size. Most of a request's time in the
//	                         database is spent waiting for its commit to reach the disk, and PostgreSQL
//	                         flushes the commits waiting together in one write (group commit), so a
//	                         pool sized for the CPUs (pgx's default, 4 on 2 cores) queues requests for a
//	                         connection while the disk could take more commits at once (docs/payments.md)
//	<SERVICE>_INTERNAL_ADDR  (empty) with TLS_*, the listener other instances of the service call:
//	                         mutual TLS admitting that service's identities only, serving forwarded
//	                         requests and the /internal/v1 routes (the public listener then refuses
//	                         those). Required with TLS_* outside dev mode; without it (dev mode, or no
//	                         TLS) peers call each other over plain HTTP on the public listener
//	<SERVICE>_ADVERTISE_URL  (https://127.0.0.1:<port of the internal addr>, or without an internal
//	                         listener http://127.0.0.1:<port of addr>) where peers reach this
//	                         instance: registered in the coordinator's membership. With an internal
//	                         listener it must be https://
//	INSTANCE_ID              (the host name) this instance's name on the ring
//	MIGRATE_ON_START         (true) apply pending migrations at start-up
//	NATS_URL                 (nats://127.0.0.1:4222)
//	COORDINATOR_URLS         (required) the coordinator nodes, comma-separated
//	MEMBERSHIP_TTL           (3s) how long a dead instance keeps its customers
//	IDEMPOTENCY_RETENTION    (24h) how long a key's answer is replayed
//	IDEMPOTENCY_LOCK_TIMEOUT (30s) how long before a silent holder's key is taken over
//	TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE (empty: plain connections) this instance's
//	                         identity (internal/identity): its certificate, key and the CA it trusts;
//	                         with them, NATS connections use mutual TLS and NATS knows the instance, and
//	                         the coordinator (COORDINATOR_URLS then https://) knows it too
//	NATS_TLS                 (true when TLS_* are set) use the instance's certificate with NATS; false only
//	                         for a NATS server without TLS (the integration tests' throwaway ones), never
//	                         in a deployment
//	PAYONCE_DEV_MODE         (false) a laptop stack: accept the README's demo API keys and the default
//	                         INTERNAL_SECRET. Without it the service refuses to start unless every key in
//	                         <SERVICE>_API_KEYS and INTERNAL_SECRET are long and random (apikey.CheckStrong);
//	                         make dev and the compose file set it
//
// Errors are recorded in env, to be reported with the service's own.
func ReadConfig(env *envconfig.Reader, service, addr string) Config {
	prefix := strings.ToUpper(service)
	host, _ := os.Hostname()
	c := Config{
		Service:          service,
		InstanceID:       env.String("INSTANCE_ID", host),
		DatabaseURL:      env.Required(prefix + "_DATABASE_URL"),
		DatabaseMaxConns: int32(env.Int(prefix+"_DATABASE_MAX_CONNS", 16)),
		MigrateOnStart:   env.Bool("MIGRATE_ON_START", true),
		NATSURL:          env.String("NATS_URL", "nats://127.0.0.1:4222"),
		CoordinatorURLs:  env.List("COORDINATOR_URLS", nil),
		MembershipTTL:    env.Duration("MEMBERSHIP_TTL", 3*time.Second),
		Idempotency: idempotency.Config{
			Retention:   env.Duration("IDEMPOTENCY_RETENTION", idempotency.DefaultRetention),
			LockTimeout: env.Duration("IDEMPOTENCY_LOCK_TIMEOUT", idempotency.DefaultLockTimeout),
		},
	}
	if pw := env.String(prefix+"_DATABASE_PASSWORD", ""); pw != "" && c.DatabaseURL != "" {
		dsn, err := identity.WithPassword(c.DatabaseURL, pw)
		if err != nil {
			env.Fail(fmt.Errorf("%s_DATABASE_URL: %w", prefix, err))
		}
		c.DatabaseURL = dsn
	}
	files, tlsOn, err := identity.FilesFromEnv(func(k string) string { return env.String(k, "") })
	if err != nil {
		env.Fail(err)
	}
	if tlsOn {
		c.TLS = &files
		c.NATSTLS = env.Bool("NATS_TLS", true)
	}
	c.DevMode = env.Bool("PAYONCE_DEV_MODE", false)
	if !c.DevMode {
		// Checked here, where every service's shared settings are, so no
		// service can forget it; the service reads the same variables.
		if keys := env.String(prefix+"_API_KEYS", ""); keys != "" {
			if err := apikey.CheckStrong(keys); err != nil {
				env.Fail(fmt.Errorf("%s_API_KEYS: %w", prefix, err))
			}
		}
		if err := apikey.CheckSecret("INTERNAL_SECRET", env.String("INTERNAL_SECRET", apikey.DevInternalSecret)); err != nil {
			env.Fail(err)
		}
	}
	if len(c.CoordinatorURLs) == 0 {
		env.Required("COORDINATOR_URLS")
	}
	c.InternalAddr = env.String(prefix+"_INTERNAL_ADDR", "")
	switch {
	case c.InternalAddr != "" && !tlsOn:
		env.Fail(fmt.Errorf("%s_INTERNAL_ADDR is set without TLS_*: the internal listener is mutual TLS and needs the instance's certificate", prefix))
	case c.InternalAddr == "" && tlsOn && !c.DevMode:
		// Like a coordinator given a plain peer URL: TLS configured but
		// callers' keys and card numbers would still cross in clear.
		env.Fail(fmt.Errorf("TLS_* set: %s_INTERNAL_ADDR is required outside dev mode (the mutual-TLS listener peers forward to; without it forwarded requests are plain HTTP)", prefix))
	}
	c.AdvertiseURL = env.String(prefix+"_ADVERTISE_URL", "")
	if c.AdvertiseURL == "" {
		scheme, listen := "http", addr
		if c.InternalAddr != "" {
			scheme, listen = "https", c.InternalAddr
		}
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			env.Fail(fmt.Errorf("%s_ADDR=%q: %w", prefix, listen, err))
		}
		c.AdvertiseURL = scheme + "://127.0.0.1:" + port
	}
	if c.InternalAddr != "" && !strings.HasPrefix(c.AdvertiseURL, "https://") {
		env.Fail(fmt.Errorf("%s_ADVERTISE_URL=%q: peers reach the internal listener over TLS; want https://", prefix, c.AdvertiseURL))
	}
	return c
}
