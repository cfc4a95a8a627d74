// Package localnats runs a real NATS server with JetStream on a free
// loopback port, for tests and the dev stack. It is the nats-server itself
// (github.com/nats-io/nats-server/v2, the version go.mod pins), not a
// stand-in: streams, de-duplication windows and redelivery behave as in
// production.
//
// It runs inside the current process, or, when given a nats-server binary
// (Options.Binary or the PAYONCE_NATS_SERVER variable), as a child process.
// `make test` builds that binary from go.mod and passes it, so the race
// detector instruments payonce's code and not the server's: a data race
// inside nats-server is not ours to fix, and must not fail our tests.
package localnats

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/payonce/payonce/internal/proc"
)

// BinaryEnv names a nats-server executable to run as a child process
// instead of the embedded server.
const BinaryEnv = "PAYONCE_NATS_SERVER"

// Server is a running NATS server with JetStream.
type Server struct {
	srv      *server.Server // embedded
	process  *proc.Process  // or a child process
	url      string
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
	// Binary is a nats-server executable to run as a child process; empty
	// means the one BinaryEnv names, or, if none, the embedded server.
	Binary string
	// Security, when set, requires mutual TLS and maps each client's
	// certificate to a user with its permissions (security.go).
	Security *Security
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
	if opts.Binary == "" {
		opts.Binary = os.Getenv(BinaryEnv)
	}
	if opts.Binary != "" {
		if err := s.startProcess(opts); err != nil {
			s.Shutdown()
			return nil, err
		}
		return s, nil
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	serverOpts := &server.Options{
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
	}
	if opts.Security != nil {
		if err := opts.Security.apply(serverOpts, s.storeDir); err != nil {
			s.cleanup()
			return nil, err
		}
	}
	srv, err := server.NewServer(serverOpts)
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
	s.url = srv.ClientURL()
	return s, nil
}

// startProcess runs opts.Binary with the same settings as the embedded
// server, written to a configuration file in the store directory, and
// waits until its monitoring endpoint reports JetStream healthy.
func (s *Server) startProcess(opts Options) error {
	port := opts.Port
	var err error
	if port == 0 {
		if port, err = proc.FreePort(); err != nil {
			return err
		}
	}
	monitor, err := proc.FreePort()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.storeDir, 0o700); err != nil {
		return fmt.Errorf("jetstream store dir: %w", err)
	}
	conf := filepath.Join(s.storeDir, "nats-server.conf")
	text := fmt.Sprintf(`server_name: payonce-local
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: %d
  max_file_store: %d
}
`, port, monitor, s.storeDir, 256<<20, 1<<30)
	if opts.Security != nil {
		text += opts.Security.Conf()
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return fmt.Errorf("nats server config: %w", err)
	}
	p, err := proc.Start("nats-server", opts.Binary, nil, nil, "-c", conf)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	s.process = p
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := proc.WaitReady(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", monitor)); err != nil {
		return fmt.Errorf("nats server (%s): %w", opts.Binary, err)
	}
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	return nil
}

// URL is the client URL, e.g. nats://127.0.0.1:4222.
func (s *Server) URL() string { return s.url }

// Shutdown stops the server and removes a temporary store.
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
	if s.process != nil {
		_ = s.process.Stop(5 * time.Second)
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.ownStore {
		_ = os.RemoveAll(s.storeDir)
	}
}
