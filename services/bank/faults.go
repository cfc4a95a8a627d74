package bank

import (
	"fmt"

	"github.com/payonce/payonce/internal/errs"
)

// Faults are the misbehaviours the simulator can be told to show. Counters
// (FailNext, LoseNext) make a test deterministic; rates make a demo lively.
type Faults struct {
	// LatencyMS is added before every mutating request, in milliseconds.
	LatencyMS int64 `json:"latency_ms"`
	// ErrorRate is the share of requests refused with 503 before any effect.
	ErrorRate float64 `json:"error_rate"`
	// LoseResponseRate is the share of requests processed whose response is
	// then lost: the charge happened, the caller sees a dropped connection.
	LoseResponseRate float64 `json:"lose_response_rate"`
	// FailNext refuses the next N requests before any effect.
	FailNext int `json:"fail_next"`
	// LoseNext processes the next N requests and loses their responses.
	LoseNext int `json:"lose_next"`
	// DeclineCards lists card numbers the issuer declines.
	DeclineCards []string `json:"decline_cards"`
	// AnswerNext answers the next requests, one status each, before any
	// effect: what a real provider says when a request with the same key
	// is still in progress (409), it is rate limiting (429) or down (503),
	// or our credentials or URL are wrong (401, 403, 404). A client must
	// tell these apart from a decline (see services/payments/bank).
	AnswerNext []int `json:"answer_next"`
}

// InjectedAnswer is a status the simulator was told to answer with
// (Faults.AnswerNext); the transport writes it as problem+json.
type InjectedAnswer struct {
	Status int
}

func (e InjectedAnswer) Error() string {
	return fmt.Sprintf("bank simulator: injected answer %d before processing; nothing was charged", e.Status)
}

// Validate refuses settings that cannot mean anything.
func (f Faults) Validate() error {
	var fields []errs.FieldError
	if f.LatencyMS < 0 || f.LatencyMS > 60_000 {
		fields = append(fields, errs.FieldError{Field: "latency_ms", Reason: "between 0 and 60000"})
	}
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		fields = append(fields, errs.FieldError{Field: "error_rate", Reason: "between 0 and 1"})
	}
	if f.LoseResponseRate < 0 || f.LoseResponseRate > 1 {
		fields = append(fields, errs.FieldError{Field: "lose_response_rate", Reason: "between 0 and 1"})
	}
	for _, code := range f.AnswerNext {
		if code < 400 || code > 599 {
			fields = append(fields, errs.FieldError{Field: "answer_next", Reason: "HTTP error statuses, 400 to 599"})
			break
		}
	}
	if f.FailNext < 0 || f.LoseNext < 0 {
		fields = append(fields, errs.FieldError{Field: "fail_next/lose_next", Reason: "not negative"})
	}
	if len(fields) > 0 {
		return errs.E(errs.Invalid, "invalid fault settings").WithFields(fields...)
	}
	return nil
}

// SetFaults replaces the fault settings.
func (s *Simulator) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	return nil
}

// Faults returns the current fault settings (counters as they stand now).
func (s *Simulator) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	f.DeclineCards = append([]string(nil), f.DeclineCards...)
	f.AnswerNext = append([]int(nil), f.AnswerNext...)
	return f
}
