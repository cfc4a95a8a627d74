//go:build !linux

package proc

import "syscall"

// childAttr is empty outside Linux: macOS and Windows have no parent-death
// signal, so a child outlives a parent that was killed (Stop and Kill still
// end it on every normal path), and a Ctrl-C in the terminal reaches the
// children too, which then shut down on their own.
func childAttr() *syscall.SysProcAttr { return nil }
