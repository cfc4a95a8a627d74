package lock_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

// BenchmarkAcquireRelease measures acquire+release cycles through the
// client against a real 3-node cluster on loopback, uncontended (each
// client its own lock) and contended (all clients one lock, queued with a
// wait). Run: go test -run '^$' -bench AcquireRelease -benchtime 3s ./pkg/lock/
func BenchmarkAcquireRelease(b *testing.B) {
	c := coordinatortest.Start(b, 3)
	for _, contended := range []bool{false, true} {
		for _, clients := range []int{1, 4, 16, 64} {
			name := fmt.Sprintf("uncontended/clients=%d", clients)
			if contended {
				name = fmt.Sprintf("contended/clients=%d", clients)
			}
			b.Run(name, func(b *testing.B) {
				cl := lock.NewClient(c.URLs())
				ctx := context.Background()
				var (
					mu   sync.Mutex
					lats []time.Duration
					wg   sync.WaitGroup
					next = make(chan struct{}, b.N)
				)
				for range b.N {
					next <- struct{}{}
				}
				close(next)
				b.ResetTimer()
				start := time.Now()
				for w := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						key := fmt.Sprintf("bench-%d", w)
						if contended {
							key = "bench-hot"
						}
						for range next {
							t0 := time.Now()
							l, err := cl.Acquire(ctx, key, 10*time.Second, lock.Wait(time.Minute))
							if err != nil {
								b.Error(err)
								return
							}
							lat := time.Since(t0)
							if err := l.Release(ctx); err != nil {
								b.Error(err)
								return
							}
							mu.Lock()
							lats = append(lats, lat)
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				slices.Sort(lats)
				if len(lats) > 0 {
					b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "cycles/s")
					b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "acquire-p50-ms")
					b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "acquire-p99-ms")
				}
			})
		}
	}
}
