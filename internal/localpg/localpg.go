// Package localpg starts a throwaway PostgreSQL cluster from the server
// binaries installed on the machine: initdb into a fresh directory, a
// postmaster on a free loopback port, and removal of everything on Stop.
//
// Tests (through internal/testenv) and the no-Docker dev stack use it, so
// both run against a real PostgreSQL server rather than a stand-in, with no
// Docker and no preinstalled, running database. PostgreSQL refuses to run as
// root; when the caller is root the cluster runs as an unprivileged OS user.
package localpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/proc"
)

// ErrNoBinaries means no PostgreSQL server binaries could be found. Its text
// tells a person exactly what to install.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found in PATH, " +
	"in `pg_config --bindir` or in /usr/lib/postgresql/*/bin: install them " +
	"(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@15`), " +
	"or point PAYONCE_TEST_DATABASE_URL at an existing server")

// Options tunes the cluster.
type Options struct {
	// Durable keeps fsync and synchronous commit on, as in production.
	// Tests leave it off: a throwaway cluster needs no crash safety, and
	// turning fsync off makes each test's commits an order of magnitude cheaper.
	Durable bool
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Log receives the server's log; nil discards it.
	Log *os.File
}

// Cluster is a running throwaway PostgreSQL server. Its superuser is
// "postgres" with a random password; every login, local socket or TCP,
// authenticates with SCRAM-SHA-256, as a production server would, so the
// dev stack and the tests exercise the same authentication the services
// meet in compose.
type Cluster struct {
	dir      string
	port     int
	password string
	cmd      *exec.Cmd
	done     chan struct{}

	stopOnce sync.Once
	stopErr  error
}

// FindBinaries returns the directory holding initdb and postgres, searching
// PATH, then `pg_config --bindir`, then /usr/lib/postgresql/*/bin (newest
// major version first), as Debian and Ubuntu install them.
func FindBinaries() (string, error) {
	return binarySearch{
		lookPath: exec.LookPath,
		pgConfig: func() ([]byte, error) { return exec.Command("pg_config", "--bindir").Output() },
		pattern:  "/usr/lib/postgresql/*/bin",
	}.find()
}

// binarySearch holds the places FindBinaries looks, so a test can show what
// happens on a machine without PostgreSQL.
type binarySearch struct {
	lookPath func(string) (string, error)
	pgConfig func() ([]byte, error)
	pattern  string
}

func (s binarySearch) find() (string, error) {
	if p, err := s.lookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	if out, err := s.pgConfig(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	candidates, _ := filepath.Glob(s.pattern)
	sort.Slice(candidates, func(i, j int) bool { return majorOf(candidates[i]) > majorOf(candidates[j]) })
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start creates and starts a cluster. It returns once the server accepts
// connections, or fails within ctx's deadline.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	runAs, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "payonce-pg-")
	if err != nil {
		return nil, fmt.Errorf("postgres data dir: %w", err)
	}
	c := &Cluster{dir: dir, done: make(chan struct{})}
	fail := func(err error) (*Cluster, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if runAs != nil {
		if err := os.Chown(dir, runAs.uid, runAs.gid); err != nil {
			return fail(fmt.Errorf("chown postgres data dir to uid %d: %w", runAs.uid, err))
		}
	}
	dataDir := filepath.Join(dir, "data")
	pwFile, err := c.writeSuperuserPassword(runAs)
	if err != nil {
		return fail(err)
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", dataDir, "-U", "postgres", "-A", "scram-sha-256", "--pwfile", pwFile,
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = initdbAttr(runAs)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out)))
	}

	port := opts.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	c.port = port
	args := []string{
		"-D", dataDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + dir,
		"-c", "max_connections=300",
		"-c", "shared_buffers=128MB",
	}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = postmasterAttr(runAs)
	if opts.Log != nil {
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	c.cmd = cmd
	go func() { _ = cmd.Wait(); close(c.done) }()

	if err := c.waitReady(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL returns a connection URL for database on this cluster.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/%s?sslmode=disable", c.password, c.port, database)
}

// Stop shuts the server down fast (SIGINT: abort transactions, no wait for
// clients) and removes its data directory. It is safe to call twice.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.cmd != nil && c.cmd.Process != nil {
			if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
				_ = c.cmd.Process.Kill() // no SIGINT on Windows
			}
			select {
			case <-c.done:
			case <-time.After(15 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
		}
		c.stopErr = os.RemoveAll(c.dir)
	})
	return c.stopErr
}

// CreateDatabase creates database name (owned by postgres).
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return CreateDatabase(ctx, c.URL("postgres"), name)
}

// CreateDatabase connects to adminURL and creates database name.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase connects to adminURL and drops database name, closing any
// connections a test left open.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to drop database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited during start-up (see its log): %w", lastErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready on port %d: %w", c.port, lastErr)
		case <-tick.C:
		}
	}
}

// osUser is the unprivileged identity the server runs as when this
// process is root (serverUser in localpg_linux.go).
type osUser struct{ uid, gid int }

// freePort is a port for the server to bind, drawn outside the kernel's
// ephemeral range (proc.FreePort says why).
func freePort() (int, error) {
	p, err := proc.FreePort()
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return p, nil
}
