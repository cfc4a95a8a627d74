// Command tracesvg draws one trace as a waterfall SVG, the picture Jaeger's
// UI shows: one row per span, indented by depth, a bar at its offset from
// the trace's start, its duration, and a legend of services.
//
// It reads either Jaeger's query API answer (GET /api/traces/{id}) or a
// dev stack trace dump (DEVSTACK_TRACE_DIR, see cmd/devstack), from a file,
// from stdin ("-"), or straight from an http:// URL:
//
//	tracesvg -o trace.svg .cache/traces/4bf92f3577b34da6a3ce929d0e0e4736.json
//	tracesvg -o trace.svg http://127.0.0.1:16686/api/traces/4bf92f3577b34da6a3ce929d0e0e4736
//
// docs/jaeger-walkthrough.md shows its output for one payment. It is a tool
// for the docs, not part of the stack; the drawing itself is
// internal/tracesvg, which the console shares.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/tracesvg"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tracesvg:", err)
		os.Exit(1)
	}
}

// maxInput bounds what is read: a payment's trace is tens of kilobytes.
const maxInput = 64 << 20

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tracesvg", flag.ContinueOnError)
	fs.SetOutput(stdout)
	out := fs.String("o", "", "write the SVG to this file (default: standard output)")
	title := fs.String("title", "", "title above the waterfall (default: the trace id)")
	traceID := fs.String("trace", "", "the trace to draw when a Jaeger answer holds several (default: the first)")
	width := fs.Int("width", 1200, "picture width in pixels")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tracesvg [flags] <file | - | http://jaeger:16686/api/traces/ID>")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want exactly one input")
	}
	_ = getenv // no environment settings; kept for the house signature
	data, err := readInput(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	t, err := tracesvg.Decode(data, *traceID)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	var svg bytes.Buffer
	if err := tracesvg.Render(&svg, t, *title, *width); err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(svg.Bytes())
		return err
	}
	return os.WriteFile(*out, svg.Bytes(), 0o644)
}

func readInput(ctx context.Context, src string) ([]byte, error) {
	var r io.Reader
	switch {
	case src == "-":
		r = os.Stdin
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", src, resp.Status)
		}
		r = resp.Body
	default:
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d MiB", src, maxInput>>20)
	}
	return data, nil
}
