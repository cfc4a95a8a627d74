// Package localnats runs a real NATS server with JetStream on a free
// loopback port, or a real 3-node JetStream cluster, for tests and the dev
// stack. It is the nats-server itself (github.com/nats-io/nats-server/v2,
// the version go.mod pins), not a stand-in: streams, replication,
// de-duplication windows and redelivery behave as in production.
//
// A server runs inside the current process, or, when given a nats-server
// binary (Options.Binary or the PAYONCE_NATS_SERVER variable), as a child
// process. `make test` builds that binary from go.mod and passes it, so the
// race detector instruments payonce's code and not the server's: a data
// race inside nats-server is not ours to fix, and must not fail our tests.
//
// What an acknowledged publish guarantees depends on the shape (see
// docs/outbox-inbox.md): on one node, the message is in that node's page
// cache and reaches disk within SyncInterval (nats-server's default: two
// minutes), so a machine crash can lose the last acknowledged messages; in
// a cluster with R3 streams, it is on a majority (2 of 3 nodes) before the
// ack, so losing any one node loses nothing.
package localnats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/payonce/payonce/internal/proc"
)

// BinaryEnv names a nats-server executable to run as a child process
// instead of the embedded server.
const BinaryEnv = "PAYONCE_NATS_SERVER"

// Server is a running NATS server with JetStream.
type Server struct {
	mu       sync.Mutex
	opts     Options
	srv      *server.Server // embedded
	process  *proc.Process  // or a child process
	url      string
	monitor  int
	ownStore bool
}

// Options tunes the server. New settings are added as fields whose zero
// value keeps today's behaviour, so callers that set only some stay valid.
type Options struct {
	// StoreDir holds JetStream's files; empty means a temporary directory
	// removed on Shutdown.
	StoreDir string
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// Binary is a nats-server executable to run as a child process; empty
	// means the one BinaryEnv names, or, if none, the embedded server.
	Binary string
	// ServerName names the node; default "payonce-local".
	ServerName string
	// SyncInterval is JetStream's fsync period ("always", "10s"); empty
	// keeps the server's default (2 minutes).
	SyncInterval string
	// Cluster, when set, makes the server a node of a JetStream cluster.
	// StartCluster fills it in.
	Cluster *ClusterNode
	// Security, when set, requires mutual TLS and maps each client's
	// certificate to a user with its permissions (security.go).
	Security *Security
}

// ClusterNode is one node's part of a cluster.
type ClusterNode struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Port is this node's route port on 127.0.0.1.
	Port int
	// Routes are the route URLs of every node (this one included).
	Routes []string
}

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	s, err := launch(opts)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// launch starts the server without waiting for it; a cluster node cannot
// be ready until a majority of its peers are up.
func launch(opts Options) (*Server, error) {
	s := &Server{}
	if opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "payonce-nats-")
		if err != nil {
			return nil, fmt.Errorf("jetstream store dir: %w", err)
		}
		opts.StoreDir, s.ownStore = dir, true
	}
	if opts.Binary == "" {
		opts.Binary = os.Getenv(BinaryEnv)
	}
	if opts.ServerName == "" {
		opts.ServerName = "payonce-local"
	}
	if opts.Port == 0 {
		port, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		opts.Port = port
	}
	s.opts = opts
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", opts.Port)
	if err := s.run(); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// run starts the server process (or embedded server) from s.opts.
func (s *Server) run() error {
	if s.opts.Binary != "" {
		return s.startProcess()
	}
	so := &server.Options{
		ServerName: s.opts.ServerName,
		Host:       "127.0.0.1",
		Port:       s.opts.Port,
		JetStream:  true,
		StoreDir:   s.opts.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		// Keep the embedded server light; tests publish little.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
	}
	if s.opts.SyncInterval == "always" {
		so.SyncAlways = true
	} else if s.opts.SyncInterval != "" {
		d, err := time.ParseDuration(s.opts.SyncInterval)
		if err != nil {
			return fmt.Errorf("sync interval %q: %w", s.opts.SyncInterval, err)
		}
		so.SyncInterval = d
	}
	if c := s.opts.Cluster; c != nil {
		so.Cluster = server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: c.Port}
		so.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	if s.opts.Security != nil {
		if err := s.opts.Security.apply(so, s.opts.StoreDir); err != nil {
			return err
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Start()
	return nil
}

// startProcess runs opts.Binary with the same settings as the embedded
// server, written to a configuration file in the store directory.
func (s *Server) startProcess() error {
	var err error
	if s.monitor == 0 {
		if s.monitor, err = proc.FreePort(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(s.opts.StoreDir, 0o700); err != nil {
		return fmt.Errorf("jetstream store dir: %w", err)
	}
	conf := filepath.Join(s.opts.StoreDir, "nats-server.conf")
	sync := ""
	if s.opts.SyncInterval != "" {
		sync = fmt.Sprintf("  sync_interval: %q\n", s.opts.SyncInterval)
	}
	text := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: %d
  max_file_store: %d
%s}
`, s.opts.ServerName, s.opts.Port, s.monitor, s.opts.StoreDir, 256<<20, 1<<30, sync)
	if c := s.opts.Cluster; c != nil {
		routeTLS := ""
		if s.opts.Security != nil {
			routeTLS = s.opts.Security.routeTLSConf()
		}
		text += fmt.Sprintf("cluster {\n  name: %q\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n%s}\n",
			c.Name, c.Port, `"`+strings.Join(c.Routes, `", "`)+`"`, routeTLS)
	}
	if s.opts.Security != nil {
		text += s.opts.Security.Conf()
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return fmt.Errorf("nats server config: %w", err)
	}
	p, err := proc.Start(s.opts.ServerName, s.opts.Binary, nil, nil, "-c", conf)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	s.mu.Lock()
	s.process = p
	s.mu.Unlock()
	return nil
}

// waitReady waits until the server serves clients with JetStream: for a
// cluster node, until the cluster has a JetStream meta leader.
func (s *Server) waitReady(timeout time.Duration) error {
	s.mu.Lock()
	srv, p := s.srv, s.process
	s.mu.Unlock()
	if p != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := proc.WaitReady(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", s.monitor)); err != nil {
			return fmt.Errorf("nats server (%s): %w", s.opts.Binary, err)
		}
		return nil
	}
	if !srv.ReadyForConnections(timeout) {
		return fmt.Errorf("nats server %s not ready within %s", s.opts.ServerName, timeout)
	}
	deadline := time.Now().Add(timeout)
	for s.opts.Cluster != nil && !srv.JetStreamIsCurrent() {
		if time.Now().After(deadline) {
			return fmt.Errorf("nats server %s: jetstream not current within %s", s.opts.ServerName, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling the server's own state
	}
	return nil
}

// URL is the client URL, e.g. nats://127.0.0.1:4222.
func (s *Server) URL() string { return s.url }

// Kill stops the server at once, as a crash would: a child process gets
// SIGKILL; an embedded server is shut down without waiting.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.process != nil {
		s.process.Kill()
		<-s.process.Done()
		s.process = nil
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart starts a stopped server again on the same ports and store, and
// waits until it is ready.
func (s *Server) Restart(timeout time.Duration) error {
	if err := s.run(); err != nil {
		return err
	}
	return s.waitReady(timeout)
}

// Shutdown stops the server and removes a temporary store.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv, p := s.srv, s.process
	s.srv, s.process = nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	if p != nil {
		_ = p.Stop(5 * time.Second)
	}
	if s.ownStore {
		_ = os.RemoveAll(s.opts.StoreDir)
	}
}

// Cluster is a running JetStream cluster of real nats-server nodes.
type Cluster struct {
	// Nodes are the servers, in the order of their names (n1, n2, n3).
	Nodes []*Server
}

// ClusterOptions tunes StartCluster.
type ClusterOptions struct {
	// Size is the number of nodes; default 3 (the smallest that survives
	// the loss of one with R3 streams).
	Size int
	// Dir holds one store directory per node; empty means temporary
	// directories removed on Shutdown.
	Dir string
	// Ports are the client ports of the nodes; empty picks free ones.
	Ports []int
	// Node is the template for every node's Options (Binary,
	// SyncInterval, and whatever later fields add); StoreDir, Port,
	// ServerName and Cluster are set per node.
	Node Options
}

// StartCluster starts Size nodes routed to each other and waits until
// JetStream has a meta leader, so streams with Size replicas can be made.
func StartCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.Size <= 0 {
		opts.Size = 3
	}
	routes := make([]string, opts.Size)
	routePorts := make([]int, opts.Size)
	for i := range opts.Size {
		p, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		routePorts[i] = p
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{}
	for i := range opts.Size {
		node := opts.Node
		node.ServerName = fmt.Sprintf("n%d", i+1)
		if i < len(opts.Ports) {
			node.Port = opts.Ports[i]
		}
		if opts.Dir != "" {
			node.StoreDir = filepath.Join(opts.Dir, node.ServerName)
		}
		node.Cluster = &ClusterNode{Name: "payonce", Port: routePorts[i], Routes: routes}
		s, err := launch(node)
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.waitReady(30*time.Second))
	}
	if err := errors.Join(errs...); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// URL is every node's client URL, comma-separated, as nats.Connect takes
// it: a client fails over to another node when its node goes.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for _, n := range c.Nodes {
		n.Shutdown()
	}
}
