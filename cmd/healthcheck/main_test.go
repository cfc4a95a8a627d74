package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	defer srv.Close()

	if err := check(srv.URL, time.Second); err != nil {
		t.Fatalf("200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := check(srv.URL, time.Second); err == nil {
		t.Fatal("503 counted as healthy")
	}
	srv.Close()
	if err := check(srv.URL, time.Second); err == nil {
		t.Fatal("a closed server counted as healthy")
	}
	if err := run([]string{"healthcheck"}); err == nil {
		t.Fatal("no URL accepted")
	}
}
