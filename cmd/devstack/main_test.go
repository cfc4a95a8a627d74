package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
)

// TestDevstackStartsAndStopsCleanly starts the dev stack on free ports, uses
// each part it prints, then cancels it (what Ctrl-C does) and checks that
// nothing is left listening.
func TestDevstackStartsAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outWriter := io.Pipe()
	done := make(chan error, 1)
	env := map[string]string{"DEVSTACK_POSTGRES_PORT": "0", "DEVSTACK_NATS_PORT": "0"}
	go func() {
		done <- run(ctx, []string{"devstack"}, func(k string) string { return env[k] }, outWriter)
		outWriter.Close()
	}()

	urls := map[string]string{}
	lines := bufio.NewScanner(out)
	ready := false
	for lines.Scan() {
		line := lines.Text()
		t.Log(line)
		if strings.HasPrefix(line, "devstack: press Ctrl-C") {
			ready = true
			break
		}
		if fields := strings.Fields(line); len(fields) >= 2 && strings.Contains(fields[len(fields)-1], "://") {
			urls[strings.Join(fields[:len(fields)-1], " ")] = fields[len(fields)-1]
		}
	}
	if !ready {
		t.Fatalf("devstack ended before it was ready: %v", <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	var addrs []string
	for _, name := range []string{"orders database", "payments database"} {
		u, ok := urls[name]
		if !ok {
			t.Fatalf("devstack printed no %q URL; got %v", name, urls)
		}
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
			t.Fatalf("%s is not migrated: %v", name, err)
		}
		conn.Close(ctx)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", conn.Config().Port))
	}
	nc, err := nats.Connect(urls["nats"])
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	addrs = append(addrs, nc.ConnectedAddr())
	nc.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("devstack returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("devstack did not stop within 30s of cancellation")
	}
	for _, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after devstack stopped", addr)
		}
	}
}
