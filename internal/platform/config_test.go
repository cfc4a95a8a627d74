package platform

import (
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/envconfig"
)

// A service outside dev mode refuses the README's demo keys and the
// default internal secret at start-up; dev mode (make dev, compose) takes
// them; long random ones need no dev mode.
func TestDemoKeysOnlyInDevMode(t *testing.T) {
	const strong = "3f9a1c7e5b2d48a0c6e19f7b3d5a2c8e"
	base := map[string]string{
		"ORDERS_DATABASE_URL": "postgres://orders@db/orders",
		"COORDINATOR_URLS":    "http://c1:8080",
	}
	read := func(extra map[string]string) error {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		r := envconfig.New(func(k string) string { return env[k] })
		ReadConfig(r, "orders", ":8080")
		return r.Err()
	}
	err := read(map[string]string{"ORDERS_API_KEYS": "demo:payonce-demo-key-1"})
	if err == nil || !strings.Contains(err.Error(), "ORDERS_API_KEYS") || !strings.Contains(err.Error(), "INTERNAL_SECRET") {
		t.Fatalf("demo key and default secret outside dev mode: %v", err)
	}
	if strings.Contains(err.Error(), "payonce-demo-key-1") {
		t.Fatalf("the error shows the key: %v", err)
	}
	if err := read(map[string]string{"ORDERS_API_KEYS": "demo:payonce-demo-key-1", "PAYONCE_DEV_MODE": "true"}); err != nil {
		t.Fatalf("dev mode: %v", err)
	}
	if err := read(map[string]string{"ORDERS_API_KEYS": "shop:" + strong, "INTERNAL_SECRET": strong + "x"}); err != nil {
		t.Fatalf("strong keys outside dev mode: %v", err)
	}
}

func TestDatabasePasswordGoesIntoTheURL(t *testing.T) {
	env := map[string]string{
		"ORDERS_DATABASE_URL":      "postgres://orders@db:5432/orders?sslmode=disable",
		"ORDERS_DATABASE_PASSWORD": "s3cret",
		"COORDINATOR_URLS":         "http://c1:8080",
		"PAYONCE_DEV_MODE":         "true",
	}
	r := envconfig.New(func(k string) string { return env[k] })
	c := ReadConfig(r, "orders", ":8080")
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://orders:s3cret@db:5432/orders?sslmode=disable" {
		t.Fatalf("DatabaseURL = %q", c.DatabaseURL)
	}
	if c.TLS != nil {
		t.Fatal("TLS on with no TLS_* variable")
	}
}

// With an identity, peers call each other on the internal listener (mutual
// TLS), which is what the instance registers: its default advertised URL is
// https://, a plain one is refused, and outside dev mode an instance with
// TLS_* but no internal listener refuses to start rather than forward
// callers' keys and card numbers in clear.
func TestInternalListenerAndAdvertisedURL(t *testing.T) {
	base := map[string]string{
		"ORDERS_DATABASE_URL": "postgres://orders@db/orders",
		"COORDINATOR_URLS":    "https://c1:8080",
		"INTERNAL_SECRET":     "3f9a1c7e5b2d48a0c6e19f7b3d5a2c8ex",
		"TLS_CERT_FILE":       "/certs/orders-1.crt",
		"TLS_KEY_FILE":        "/certs/orders-1.key",
		"TLS_CA_FILE":         "/certs/ca.crt",
	}
	read := func(extra map[string]string) (Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		r := envconfig.New(func(k string) string { return env[k] })
		c := ReadConfig(r, "orders", ":8080")
		return c, r.Err()
	}
	if _, err := read(nil); err == nil || !strings.Contains(err.Error(), "ORDERS_INTERNAL_ADDR is required") {
		t.Fatalf("TLS without an internal listener outside dev mode: %v", err)
	}
	c, err := read(map[string]string{"PAYONCE_DEV_MODE": "true"})
	if err != nil || c.InternalAddr != "" || c.AdvertiseURL != "http://127.0.0.1:8080" {
		t.Fatalf("dev mode without an internal listener: %+v, %v", c, err)
	}
	c, err = read(map[string]string{"ORDERS_INTERNAL_ADDR": ":8443"})
	if err != nil || c.AdvertiseURL != "https://127.0.0.1:8443" {
		t.Fatalf("internal listener: advertise %q, %v", c.AdvertiseURL, err)
	}
	if _, err := read(map[string]string{"ORDERS_INTERNAL_ADDR": ":8443", "ORDERS_ADVERTISE_URL": "http://orders-1:8443"}); err == nil || !strings.Contains(err.Error(), "want https://") {
		t.Fatalf("a plain advertised URL with an internal listener: %v", err)
	}
	if _, err := read(map[string]string{"ORDERS_INTERNAL_ADDR": ":8443", "TLS_CERT_FILE": "", "TLS_KEY_FILE": "", "TLS_CA_FILE": ""}); err == nil || !strings.Contains(err.Error(), "without TLS_*") {
		t.Fatalf("an internal listener without a certificate: %v", err)
	}
}
