package console

import (
	"bytes"
	"context"
	"fmt"
	"regexp"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/tracesvg"
)

var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TraceSVG draws one trace as a waterfall (internal/tracesvg, what
// cmd/tracesvg draws for the docs), from Jaeger's query API or the dev
// stack's trace sink: the inline picture for a stack with no Jaeger UI.
func (c *Console) TraceSVG(ctx context.Context, traceID string) ([]byte, error) {
	if !traceIDPattern.MatchString(traceID) {
		return nil, errs.E(errs.Invalid, "invalid trace id").WithFields(errs.FieldError{Field: "id", Reason: "32 lowercase hex digits"})
	}
	data, err := c.cfg.Stack.Trace(ctx, traceID)
	if err != nil {
		return nil, err
	}
	t, err := tracesvg.Decode(data, traceID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, "the trace could not be read", fmt.Errorf("trace %s: %w", traceID, err))
	}
	var out bytes.Buffer
	if err := tracesvg.Render(&out, t, "", 1100); err != nil {
		return nil, fmt.Errorf("draw trace %s: %w", traceID, err)
	}
	return out.Bytes(), nil
}
