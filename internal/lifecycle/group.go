// Package lifecycle runs a process's long-lived parts (HTTP server,
// outbox relay, consumers, background workers) together: they start
// together, and when one fails or the process is told to stop, all of them
// stop and the first failure is reported.
package lifecycle

import (
	"context"
	"fmt"
	"sync"
)

// Group is a set of parts sharing one lifetime.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// NewGroup returns a group whose parts run until ctx ends or one fails.
func NewGroup(ctx context.Context) *Group {
	ctx, cancel := context.WithCancel(ctx)
	return &Group{ctx: ctx, cancel: cancel}
}

// Go starts the part name. A part returns nil when its context ends; any
// error stops the whole group.
func (g *Group) Go(name string, run func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := run(g.ctx); err != nil {
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
			g.cancel()
		}
	}()
}

// Wait blocks until every part returned, and returns the first failure.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
