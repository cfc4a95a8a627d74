package remote

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/payonce/payonce/services/console"
)

// Control drives the dev stack's control endpoint (cmd/devstack); it
// implements console.Control.
type Control struct {
	base string
	s    *Stack
}

// NewControl returns a Control for the endpoint at base.
func NewControl(base string, timeout time.Duration) *Control {
	// Killing a process waits for it to exit; give actions room.
	return &Control{base: base, s: NewStack(Config{Timeout: max(timeout, 30*time.Second)})}
}

var _ console.Control = (*Control)(nil)

// Processes lists the dev stack's processes.
func (c *Control) Processes(ctx context.Context) ([]console.Process, error) {
	var a struct {
		Processes []console.Process `json:"processes"`
	}
	_, _, err := c.s.do(ctx, "GET", c.base+"/processes", nil, nil, &a)
	return a.Processes, err
}

// KillLeader SIGKILLs the current Raft leader's process.
func (c *Control) KillLeader(ctx context.Context) (string, error) {
	var a struct {
		Killed string `json:"killed"`
	}
	_, _, err := c.s.do(ctx, "POST", c.base+"/kill-leader", nil, []byte("{}"), &a)
	return a.Killed, err
}

// Start starts a stopped process again.
func (c *Control) Start(ctx context.Context, name string) error {
	return c.post(ctx, "/processes/"+url.PathEscape(name)+"/start")
}

// Stop stops a process gracefully.
func (c *Control) Stop(ctx context.Context, name string) error {
	return c.post(ctx, "/processes/"+url.PathEscape(name)+"/stop")
}

// Pause freezes a process for d, then resumes it.
func (c *Control) Pause(ctx context.Context, name string, d time.Duration) error {
	return c.post(ctx, "/processes/"+url.PathEscape(name)+"/pause?seconds="+strconv.Itoa(int(d.Seconds())))
}

func (c *Control) post(ctx context.Context, path string) error {
	resp, data, err := c.s.do(ctx, "POST", c.base+path, nil, []byte("{}"), nil)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, data)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %s", path, resp.Status)
	}
	return nil
}

// Databases lists the services' databases.
func (c *Control) Databases(ctx context.Context) ([]console.Database, error) {
	var a struct {
		Databases []console.Database `json:"databases"`
	}
	_, _, err := c.s.do(ctx, "GET", c.base+"/databases", nil, nil, &a)
	return a.Databases, err
}

// StopDatabase makes a database refuse connections for d.
func (c *Control) StopDatabase(ctx context.Context, name string, d time.Duration) error {
	return c.post(ctx, "/databases/"+url.PathEscape(name)+"/stop?seconds="+strconv.Itoa(int(d.Seconds())))
}

// StartDatabase makes a database accept connections again.
func (c *Control) StartDatabase(ctx context.Context, name string) error {
	return c.post(ctx, "/databases/"+url.PathEscape(name)+"/start")
}
