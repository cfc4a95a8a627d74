//go:build unix

package main

import "syscall"

// pauseProcess stops pid (SIGSTOP): it keeps its sockets and state but
// answers nothing, like a process stuck in a long GC pause or a frozen VM.
func pauseProcess(pid int) error { return syscall.Kill(pid, syscall.SIGSTOP) }

// resumeProcess lets a paused pid run again (SIGCONT).
func resumeProcess(pid int) error { return syscall.Kill(pid, syscall.SIGCONT) }
