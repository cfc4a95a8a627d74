// Package failpoint lets a test kill a process at an exact point of its
// work, to prove that what the process leaves behind can be recovered.
//
// A process enables failpoints from its configuration
// (PAYONCE_FAILPOINTS="payments.after_authorizing"); when execution reaches
// an enabled point, the process sends itself SIGKILL: no deferred calls, no
// graceful shutdown, exactly what a crash or an OOM kill does. With no
// failpoint enabled, Hit is one atomic load. A point checked with Once
// instead makes the process misbehave once (no crash) and disarms.
package failpoint

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

var (
	enabled atomic.Bool
	mu      sync.Mutex
	points  map[string]bool
)

// Enable arms the comma-separated points in spec; an empty spec arms none.
func Enable(spec string) {
	mu.Lock()
	defer mu.Unlock()
	points = map[string]bool{}
	for _, p := range strings.Split(spec, ",") {
		if p = strings.TrimSpace(p); p != "" {
			points[p] = true
		}
	}
	enabled.Store(len(points) > 0)
}

// Hit kills the process if point is armed.
func Hit(point string) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	armed := points[point]
	mu.Unlock()
	if armed {
		// SIGKILL on Unix, TerminateProcess on Windows: a crash either way.
		if self, err := os.FindProcess(os.Getpid()); err == nil {
			_ = self.Kill()
		}
		select {} // SIGKILL is not delivered synchronously; never go on.
	}
}

// Once reports whether point is armed, and disarms it: for failpoints that
// do not crash but make the process misbehave once at that point (drop an
// event it should publish, say), so a test can show what heals it.
func Once(point string) bool {
	if !enabled.Load() {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	if !points[point] {
		return false
	}
	delete(points, point)
	return true
}
