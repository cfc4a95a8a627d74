//go:build !linux

package main

import "syscall"

// childAttr is empty outside Linux, which alone has a parent-death signal:
// there Jaeger is stopped on every normal exit path of the dev stack, and
// outlives it only if the stack itself is killed.
func childAttr() *syscall.SysProcAttr { return nil }
