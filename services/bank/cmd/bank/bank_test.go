package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// startedBank is a bank started by startBank: where each listener it
// announced listens, and how to stop it.
type startedBank struct {
	public, admin string // admin is empty unless BANK_ADMIN_ADDR was set
	stop          func() // cancels run and checks it returns cleanly
}

// startBank runs the bank's run with env as its environment, reads the
// addresses it announces ("bank simulator listening", and "bank admin
// listening" when env has BANK_ADMIN_ADDR) from its log, and fails the test
// if it never says. Call stop once the test is done with it.
func startBank(t *testing.T, env map[string]string) startedBank {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"bank"}, func(k string) string { return env[k] }, w); w.Close() }()
	want := 1
	if env["BANK_ADMIN_ADDR"] != "" {
		want = 2
	}
	addrs := map[string]string{}
	lines := bufio.NewScanner(out)
	for len(addrs) < want && lines.Scan() {
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) == nil {
			if msg, _ := rec["msg"].(string); msg == "bank simulator listening" || msg == "bank admin listening" {
				addrs[msg], _ = rec["addr"].(string)
			}
		}
	}
	b := startedBank{public: addrs["bank simulator listening"], admin: addrs["bank admin listening"]}
	if b.public == "" || (want == 2 && b.admin == "") {
		t.Fatalf("bank did not say where it listens: %v (%v)", addrs, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	b.stop = func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("run did not return after cancellation")
		}
	}
	return b
}
