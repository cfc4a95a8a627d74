// Package proc builds payonce's commands and runs them as child processes,
// for the no-Docker dev stack and for integration tests that need real
// processes they can SIGKILL.
package proc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Build compiles each package (import paths or ./relative paths, resolved
// from the module root dir) into binDir and returns the binaries by the
// package's last path element.
func Build(ctx context.Context, moduleDir, binDir string, pkgs ...string) (map[string]string, error) {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"build", "-o", binDir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	bins := map[string]string{}
	for _, p := range pkgs {
		name := path.Base(p)
		bins[name] = filepath.Join(binDir, name)
	}
	return bins, nil
}

// Process is a running child process whose output is kept.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// Start runs bin with args, and env added to this process's environment.
// Its output goes to log (if not nil) and is kept for Output.
func Start(name, bin string, env []string, log io.Writer, args ...string) (*Process, error) {
	p := &Process{Name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var w io.Writer = p.out
	if log != nil {
		w = io.MultiWriter(p.out, &prefixWriter{prefix: name + " | ", w: log})
	}
	cmd.Stdout, cmd.Stderr = w, w
	// On Linux the child dies with us and has a process group of its own
	// (childAttr in proc_linux.go); elsewhere it is a plain child.
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr returns the exit error once Done is closed.
func (p *Process) ExitErr() error { <-p.done; return p.err }

// Kill kills the process (SIGKILL on Unix) and waits for the exit: a
// crash, not a shutdown.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits up to grace for a clean exit, then kills.
// Where a process cannot be sent SIGTERM (Windows), it is killed at once.
func (p *Process) Stop(grace time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.Kill()
		return p.err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, grace)
	}
}

// Output returns everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// The window FreePort draws from: below the ephemeral ranges of Linux
// (32768-60999) and of macOS and Windows (49152-65535). A port handed out
// by listening on :0 comes from the ephemeral range, which the kernel also
// uses for the source port of every outgoing connection; between our probe
// closing and the child binding it, any connection made on this machine
// (a test's HTTP client, a build's download) could take it, and the child
// fails with "address already in use". No outgoing connection takes a port
// in this window, so only another FreePort caller could, and the random draw
// and the in-process record below make that unlikely.
const (
	freePortLow  = 20000
	freePortHigh = 32000
)

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before. The caller gives it to a
// child process to bind, so it is chosen outside the kernel's ephemeral
// range (see freePortLow).
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		p := freePortLow + rand.IntN(freePortHigh-freePortLow)
		if handedOut.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use (or reserved): draw again
		}
		ln.Close()
		handedOut.ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port in 127.0.0.1:%d-%d after 200 draws", freePortLow, freePortHigh)
}

// WaitReady polls url until it answers 200, the process exits, or ctx ends.
func WaitReady(ctx context.Context, p *Process, url string) error {
	return WaitReadyWith(ctx, p, url, &http.Client{Timeout: time.Second})
}

// WaitReadyWith is WaitReady asking through client: an https:// server of
// the stack's CA needs a client that trusts it. client should have a
// timeout of its own, so a hung server does not stall the poll.
func WaitReadyWith(ctx context.Context, p *Process, url string, client *http.Client) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); output:\n%s", p.Name, p.err, p.Output())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %s; output:\n%s", p.Name, url, last, p.Output())
		case <-tick.C:
		}
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// prefixWriter prefixes each line with the process name.
type prefixWriter struct {
	mu      sync.Mutex
	prefix  string
	w       io.Writer
	midLine bool
}

func (pw *prefixWriter) Write(p []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out bytes.Buffer
	for _, c := range p {
		if !pw.midLine {
			out.WriteString(pw.prefix)
			pw.midLine = true
		}
		out.WriteByte(c)
		if c == '\n' {
			pw.midLine = false
		}
	}
	if _, err := pw.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
