package coordinator

import (
	"fmt"
	"time"

	"github.com/payonce/payonce/internal/errs"
)

// Limits on client input. A TTL shorter than MinTTL cannot survive one leader
// election; one longer than MaxTTL would let a crashed holder block a lock for
// too long.
const (
	MinTTL     = 100 * time.Millisecond
	MaxTTL     = time.Hour
	MaxWait    = 5 * time.Minute
	maxNameLen = 200
)

// ValidateName checks a lock, service or instance name: 1-200 characters of
// letters, digits and "._:-" (no "/", so a name is one URL path segment).
func ValidateName(field, name string) *errs.FieldError {
	if name == "" {
		return &errs.FieldError{Field: field, Reason: "must not be empty"}
	}
	if len(name) > maxNameLen {
		return &errs.FieldError{Field: field, Reason: fmt.Sprintf("must be at most %d characters", maxNameLen)}
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return &errs.FieldError{Field: field, Reason: "may contain only letters, digits and . _ : -"}
		}
	}
	return nil
}

// ValidateTTL checks a lease or registration TTL against MinTTL and MaxTTL.
func ValidateTTL(field string, ttl time.Duration) *errs.FieldError {
	if ttl < MinTTL || ttl > MaxTTL {
		return &errs.FieldError{Field: field, Reason: fmt.Sprintf("must be between %v and %v", MinTTL, MaxTTL)}
	}
	return nil
}

// Validate checks an acquire request and returns an Invalid error listing
// every bad field, or nil.
func (r AcquireRequest) Validate() error {
	var fields []errs.FieldError
	if f := ValidateName("lock", r.Lock); f != nil {
		fields = append(fields, *f)
	}
	if f := ValidateName("request_id", r.RequestID); f != nil {
		fields = append(fields, *f)
	}
	if f := ValidateTTL("ttl_ms", r.TTL); f != nil {
		fields = append(fields, *f)
	}
	if r.Wait < 0 || r.Wait > MaxWait {
		fields = append(fields, errs.FieldError{Field: "wait_ms", Reason: fmt.Sprintf("must be between 0 and %v", MaxWait)})
	}
	if len(r.Owner) > maxNameLen {
		fields = append(fields, errs.FieldError{Field: "owner", Reason: "too long"})
	}
	return invalid(fields)
}

// Validate checks a registration and returns an Invalid error listing every
// bad field, or nil.
func (m Member) Validate() error {
	var fields []errs.FieldError
	if f := ValidateName("service", m.Service); f != nil {
		fields = append(fields, *f)
	}
	if f := ValidateName("instance", m.Instance); f != nil {
		fields = append(fields, *f)
	}
	if m.Addr == "" || len(m.Addr) > maxNameLen {
		fields = append(fields, errs.FieldError{Field: "addr", Reason: "must be 1-200 characters"})
	}
	if f := ValidateTTL("ttl_ms", m.TTL); f != nil {
		fields = append(fields, *f)
	}
	return invalid(fields)
}

func invalid(fields []errs.FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return errs.E(errs.Invalid, "invalid request").WithFields(fields...)
}
