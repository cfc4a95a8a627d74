package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// processAlive reports whether pid still exists (as anything but a zombie
// we have not reaped: run() waits for every child it starts).
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// childrenOf lists the processes whose parent is ppid, read from /proc.
func childrenOf(t *testing.T, ppid int) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		// On Linux /proc is always there; without it this check would
		// prove nothing.
		t.Fatalf("cannot list child processes from /proc: %v", err)
	}
	var out []string
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended while we looked
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at ')'.
		s := string(data)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) >= 2 && fields[1] == strconv.Itoa(ppid) {
			out = append(out, strings.TrimSpace(s[:end+1]))
		}
	}
	return out
}
