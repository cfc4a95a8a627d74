// Package envconfig reads a service's configuration from environment
// variables. Each service declares its variables, defaults and meaning in
// one Config struct filled by one function, which is also what its README
// table documents; errors for every bad variable are reported together so a
// misconfigured deployment is fixed in one round, not one variable at a time.
//
// Any variable X may instead be given as X_FILE, the path of a file holding
// the value: that is how secrets reach containers (compose `secrets:`,
// Kubernetes secret volumes) without appearing in the environment.
package envconfig

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Reader reads typed variables through getenv, collecting parse errors.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// lookup returns key's value, read from the file key_FILE names when that
// is set instead (trailing white space dropped).
func (r *Reader) lookup(key string) string {
	v := strings.TrimSpace(r.getenv(key))
	file := strings.TrimSpace(r.getenv(key + "_FILE"))
	if file == "" {
		return v
	}
	if v != "" {
		r.errs = append(r.errs, fmt.Errorf("%s and %s_FILE are both set: set one", key, key))
		return v
	}
	data, err := os.ReadFile(file)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s_FILE: %w", key, err))
		return ""
	}
	return strings.TrimSpace(string(data))
}

// New returns a Reader over getenv (os.Getenv in main, a map in tests).
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// String returns key's value, or def when unset or empty.
func (r *Reader) String(key, def string) string {
	if v := r.lookup(key); v != "" {
		return v
	}
	return def
}

// Required returns key's value and records an error when it is unset.
func (r *Reader) Required(key string) string {
	v := r.lookup(key)
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("%s is required", key))
	}
	return v
}

// Int returns key as an integer, or def when unset.
func (r *Reader) Int(key string, def int) int {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want an integer", key, v))
		return def
	}
	return n
}

// Bool returns key as a boolean (true/false/1/0), or def when unset.
func (r *Reader) Bool(key string, def bool) bool {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want true or false", key, v))
		return def
	}
	return b
}

// Duration returns key as a Go duration ("250ms", "30s"), or def when unset.
// Zero and negative durations are refused: every duration payonce reads is
// a timeout, TTL or interval, for which they are always a mistake.
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a positive duration such as 500ms or 30s", key, v))
		return def
	}
	return d
}

// List returns key split on commas with blanks dropped, or def when unset.
func (r *Reader) List(key string, def []string) []string {
	v := r.lookup(key)
	if v == "" {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Fail records an error found while interpreting the variables.
func (r *Reader) Fail(err error) { r.errs = append(r.errs, err) }

// Err returns every error recorded so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }
