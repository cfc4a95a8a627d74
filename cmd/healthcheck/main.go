// Command healthcheck GETs one URL and exits 0 if the answer is 2xx, 1
// otherwise. payonce's container images are FROM scratch, with no shell or
// curl in them, so this tiny static binary is what a compose healthcheck
// runs inside the container:
//
//	healthcheck http://127.0.0.1:8090/readyz
//
// It uses only the standard library, and a short timeout, so a hung service
// counts as unhealthy instead of hanging the check.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s URL", args[0])
	}
	return check(args[1], 3*time.Second)
}

// check reports whether url answers a GET with a 2xx status within timeout.
func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
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
