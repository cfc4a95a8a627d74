//go:build !linux

package localpg

import "syscall"

// serverUser is nil outside Linux: on macOS and Windows a developer runs
// the tests as themselves, never as root, and PostgreSQL runs as them too.
// (As root there, PostgreSQL refuses to start and says so.)
func serverUser() (*osUser, error) { return nil, nil }

// initdbAttr has nothing to set outside Linux.
func initdbAttr(*osUser) *syscall.SysProcAttr { return nil }

// postmasterAttr has nothing to set outside Linux: there is no
// parent-death signal, so a server whose test process was killed outlives
// it (Stop ends it on every normal path).
func postmasterAttr(*osUser) *syscall.SysProcAttr { return nil }
