//go:build !unix

package main

import (
	"errors"
	"fmt"
)

// pauseProcess is not available where there is no SIGSTOP (Windows): the
// console's pause button answers with this error.
func pauseProcess(int) error {
	return fmt.Errorf("pausing a process: %w on this platform", errors.ErrUnsupported)
}

// resumeProcess has nothing to resume where nothing can be paused.
func resumeProcess(int) error { return nil }
