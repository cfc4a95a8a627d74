package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestRunServesAndStops(t *testing.T) {
	bank := startBank(t, map[string]string{"BANK_ADDR": "127.0.0.1:0"})
	addr := bank.public

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/authorizations",
		strings.NewReader(`{"amount":100,"currency":"EUR","card":"4242424242424242","capture":true}`))
	req.Header.Set("Idempotency-Key", "run-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("authorize: %v %v", resp, err)
	}
	resp.Body.Close()

	bank.stop()
}

func TestBadConfigurationIsRefused(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"error rate above 1":      {"BANK_ERROR_RATE": "1.5"},
		"error rate not a number": {"BANK_ERROR_RATE": "often"},
		"negative latency":        {"BANK_LATENCY_MS": "-5"},
		"latency not a number":    {"BANK_LATENCY_MS": "slow"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), []string{"bank"}, func(k string) string { return env[k] }, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
