package main

import "syscall"

// childAttr makes Jaeger die with the dev stack (Pdeathsig), so a killed
// `make dev` leaves no Jaeger on its ports. internal/proc does the same for
// the stack's other processes.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
