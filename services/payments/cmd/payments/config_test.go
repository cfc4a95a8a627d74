package main

import (
	"strings"
	"testing"
)

// With an identity and outside dev mode, payments refuses a plain bank
// URL at start-up: card numbers would cross the network in clear. An
// https:// bank is accepted, and dev mode keeps the laptop's plain bank.
func TestPlainBankRefusedWithTLSOutsideDevMode(t *testing.T) {
	const strong = "3f9a1c7e5b2d48a0c6e19f7b3d5a2c8e"
	env := map[string]string{
		"PAYMENTS_DATABASE_URL":  "postgres://payments@db/payments",
		"COORDINATOR_URLS":       "https://c1:8080",
		"PAYMENTS_API_KEYS":      "peer:" + strong,
		"PAYMENTS_PEER_API_KEY":  strong,
		"INTERNAL_SECRET":        strong + "x",
		"TLS_CERT_FILE":          "/certs/payments-1.crt",
		"TLS_KEY_FILE":           "/certs/payments-1.key",
		"TLS_CA_FILE":            "/certs/ca.crt",
		"PAYMENTS_INTERNAL_ADDR": ":8443",
		"BANK_URL":               "http://bank:8099",
	}
	getenv := func(k string) string { return env[k] }
	if _, err := loadConfig(getenv); err == nil || !strings.Contains(err.Error(), "BANK_URL") {
		t.Fatalf("plain bank with TLS outside dev mode: %v", err)
	}
	env["BANK_URL"] = "https://bank:8443"
	if _, err := loadConfig(getenv); err != nil {
		t.Fatalf("https bank: %v", err)
	}
	env["BANK_URL"], env["PAYONCE_DEV_MODE"] = "http://127.0.0.1:8099", "true"
	if _, err := loadConfig(getenv); err != nil {
		t.Fatalf("plain bank in dev mode: %v", err)
	}
}
