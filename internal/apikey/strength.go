package apikey

import (
	"fmt"
	"strings"
)

// Outside dev mode a key or secret must be at least MinStrongLength
// characters with at least MinDistinct different ones: what
// `openssl rand -hex 32` or a password manager gives, and what a typed
// phrase, a repeated pattern or a demo key does not.
const (
	MinStrongLength = 32
	MinDistinct     = 10
)

// weak reports why secret is not strong enough outside dev mode, or "".
func weak(secret string) string {
	distinct := map[rune]bool{}
	for _, r := range secret {
		distinct[r] = true
	}
	switch {
	case len(secret) < MinStrongLength:
		return fmt.Sprintf("%d characters, want at least %d", len(secret), MinStrongLength)
	case len(distinct) < MinDistinct:
		return fmt.Sprintf("only %d different characters, want at least %d", len(distinct), MinDistinct)
	case strings.Contains(strings.ToLower(secret), "demo"), secret == DevInternalSecret:
		return "a published demo value"
	}
	return ""
}

// CheckStrong refuses, outside dev mode, an API key list (Parse's format)
// holding a key that is short, repetitive, or a demo key: the demo keys are
// in the README, so a stack that accepts them accepts anyone. The error
// names the callers, never the keys.
func CheckStrong(spec string) error {
	var bad []string
	for _, pair := range strings.Split(spec, ",") {
		caller, key, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok {
			continue // Parse reports it
		}
		if why := weak(key); why != "" {
			bad = append(bad, fmt.Sprintf("caller %q: %s", caller, why))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("API keys too weak outside dev mode (%s); use long random keys (openssl rand -hex 32), or set PAYONCE_DEV_MODE=true on a laptop", strings.Join(bad, "; "))
	}
	return nil
}

// CheckSecret refuses, outside dev mode, a weak value of the secret
// variable name (INTERNAL_SECRET).
func CheckSecret(name, secret string) error {
	if why := weak(secret); why != "" {
		return fmt.Errorf("%s too weak outside dev mode (%s); use a long random value (openssl rand -hex 32), or set PAYONCE_DEV_MODE=true on a laptop", name, why)
	}
	return nil
}
