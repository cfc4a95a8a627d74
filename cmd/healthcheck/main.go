// Command healthcheck GETs one URL and exits 0 if the answer is 2xx, 1
// otherwise. payonce's container images are FROM scratch, with no shell or
// curl in them, so this tiny static binary is what a compose healthcheck
// runs inside the container:
//
//	healthcheck http://127.0.0.1:8090/readyz
//	healthcheck https://127.0.0.1:8080/readyz   (a coordinator, over TLS)
//
// With TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE set (the container's own
// identity, which payonce's services read too) an https:// URL is checked
// trusting that CA only and presenting the container's certificate; without
// them, the system's roots. It never skips verification: a check that
// accepted any certificate would call a stranger on the port healthy.
//
// It uses a short timeout, so a hung service counts as unhealthy instead of
// hanging the check.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

func main() {
	if err := run(os.Args, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

const timeout = 3 * time.Second

func run(args []string, getenv func(string) string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s URL", args[0])
	}
	client, err := clientFor(getenv)
	if err != nil {
		return err
	}
	return check(client, args[1], timeout)
}

// clientFor is the HTTP client of the container's identity (TLS_*), or a
// plain one when the container has none.
func clientFor(getenv func(string) string) (*http.Client, error) {
	files, ok, err := identity.FilesFromEnv(getenv)
	if err != nil || !ok {
		return &http.Client{}, err
	}
	return identity.HTTPClient(files, 0)
}

// check reports whether url answers a GET with a 2xx status within timeout.
func check(client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
