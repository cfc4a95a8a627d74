package lock_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

// BenchmarkTLSCost measures acquire+release cycles per second against two
// 3-node clusters started in the same run, one plain and one with mutual
// TLS everywhere (HTTPS API with client certificates and authorisation by
// identity, Raft over TLS), so the difference is what identity costs.
// Uncontended: each worker its own lock; the client keeps connections
// alive, so the handshake is paid once per connection, not per request.
// Run: go test -run '^$' -bench TLSCost -benchtime 5s ./pkg/lock/
func BenchmarkTLSCost(b *testing.B) {
	plain := coordinatortest.Start(b, 3)
	secure := coordinatortest.StartWith(b, 3, coordinatortest.Options{TLS: true})
	clients := map[string]*lock.Client{
		"plain": lock.NewClient(plain.URLs()),
		"tls": lock.NewClient(secure.URLs(), lock.WithHTTPClient(
			secure.PKI().Client(identity.ID{Service: identity.Payments, Instance: "payments-1"}))),
	}
	for _, workers := range []int{1, 16} {
		for _, mode := range []string{"plain", "tls"} {
			b.Run(fmt.Sprintf("%s/workers=%d", mode, workers), func(b *testing.B) {
				cl := clients[mode]
				ctx := context.Background()
				next := make(chan struct{}, b.N)
				for range b.N {
					next <- struct{}{}
				}
				close(next)
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range next {
							l, err := cl.Acquire(ctx, fmt.Sprintf("payments:tls-bench-%d", w), 10*time.Second)
							if err != nil {
								b.Error(err)
								return
							}
							if err := l.Release(ctx); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cycles/s")
			})
		}
	}
}
