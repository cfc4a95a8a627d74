// Package localnats runs a real NATS server with JetStream inside the
// current process, on a free loopback port, for tests and the dev stack.
// It is the nats-server itself (github.com/nats-io/nats-server/v2), not a
// stand-in: streams, de-duplication windows and redelivery behave as in
// production.
package localnats

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a running embedded NATS server with JetStream.
type Server struct {
	srv      *server.Server
	storeDir string
	ownStore bool
}

// Options tunes the server.
type Options struct {
	// StoreDir holds JetStream's files; empty means a temporary directory
	// removed on Shutdown.
	StoreDir string
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
}

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	s := &Server{storeDir: opts.StoreDir}
	if s.storeDir == "" {
		dir, err := os.MkdirTemp("", "payonce-nats-")
		if err != nil {
			return nil, fmt.Errorf("jetstream store dir: %w", err)
		}
		s.storeDir, s.ownStore = dir, true
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "payonce-local",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   s.storeDir,
		NoLog:      true,
		NoSigs:     true,
		// Keep the embedded server light; tests publish little.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
	})
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("nats server: %w", err)
	}
	s.srv = srv
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server not ready within 10s")
	}
	return s, nil
}

// URL is the client URL, e.g. nats://127.0.0.1:4222.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Shutdown stops the server and removes a temporary store.
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.ownStore {
		_ = os.RemoveAll(s.storeDir)
	}
}
