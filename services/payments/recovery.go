package payments

import (
	"context"
	"log/slog"
	"time"
)

// RunRecovery resumes unfinished payments and refunds every interval
// until ctx ends. A payment whose process died mid-charge has no client
// guaranteed to retry it (an orders.created redelivery might, an API client
// might not), so this worker finishes it: same payment, same bank key, so
// the bank charges at most once. olderThan keeps it away from charges a
// live process is still working on; if it does meet one, the customer lock
// makes it wait, and the fence makes whichever holder is stale harmless.
func RunRecovery(ctx context.Context, svc Service, interval, olderThan time.Duration, logger *slog.Logger) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n, err := svc.ResumeUnfinished(ctx, olderThan, 100)
		if n > 0 {
			logger.InfoContext(ctx, "recovery worker finished stuck work", "count", n)
		}
		if err != nil && ctx.Err() == nil {
			logger.WarnContext(ctx, "recovery worker could not finish some work; will retry", "err", err)
		}
	}
}
