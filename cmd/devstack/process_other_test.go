//go:build !linux

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// processAlive reports whether pid still exists (signal 0 checks without
// sending anything).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// childrenOf lists the processes whose parent is ppid, as ps(1) prints
// them (macOS has no /proc).
func childrenOf(t *testing.T, ppid int) []string {
	t.Helper()
	out, err := exec.Command("ps", "-A", "-o", "pid=,ppid=,comm=").Output()
	if err != nil {
		t.Fatalf("cannot list child processes with ps: %v", err)
	}
	var children []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 3 && fields[1] == strconv.Itoa(ppid) {
			children = append(children, fields[0]+" ("+strings.Join(fields[2:], " ")+")")
		}
	}
	return children
}
