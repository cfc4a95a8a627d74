package main

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
)

// TestPartyThatGainedAHostIsReissued: a certificates volume made before
// NATS became a 3-node cluster holds a NATS certificate for "nats" only;
// the next run must re-issue it for nats-1..3 (each node presents it to the
// others on the cluster routes), not keep it because it is still young.
func TestPartyThatGainedAHostIsReissued(t *testing.T) {
	dir := t.TempDir()
	runCerts(t, "-dir", dir, "nats/nats=nats,localhost,127.0.0.1") // the old compose party
	out := runCerts(t, "-dir", dir)
	if !strings.Contains(out, "  issued spiffe://payonce/nats/nats ") {
		t.Fatalf("the NATS certificate without the cluster's host names was kept:\n%s", out)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "nats.crt"), filepath.Join(dir, "nats.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"nats", "nats-1", "nats-2", "nats-3", "127.0.0.1"} {
		if err := pair.Leaf.VerifyHostname(host); err != nil {
			t.Errorf("the NATS certificate does not name %s: %v", host, err)
		}
	}
	if again := runCerts(t, "-dir", dir); strings.Contains(again, "  issued ") {
		t.Fatalf("a run after that re-issued certificates that name every host:\n%s", again)
	}
}
