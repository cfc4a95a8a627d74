package integration

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCLIDemo runs `payonce-cli demo` against the whole stack: it drives
// every scenario the README shows and exits non-zero if one misbehaves.
func TestCLIDemo(t *testing.T) {
	s := startFullStack(t, 1, 1)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/payonce-cli",
		"-orders", s.orders.urls[0], "-payments", s.payments.urls[0], "-bank", s.bank.url, "-key", testAPIKey, "demo")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, want := range []string{"Idempotent-Replayed: true", "422", "is paid", "exactly 1 capture", "done:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
