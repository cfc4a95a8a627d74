// Package integration holds tests that run payonce's parts against real
// infrastructure: a throwaway PostgreSQL cluster, a real NATS server with
// JetStream, and real service processes built from this repository.
package integration

import (
	"os"
	"testing"

	"github.com/payonce/payonce/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	removeBinaries()
	os.Exit(code)
}
