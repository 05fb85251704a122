package adaptertest

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Epoch is where every FakeClock starts: fixed, so that runs are
// reproducible.
var Epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// FakeClock is an adapters.Clock whose time only moves when someone sleeps:
// Sleep returns at once (unless the context is done), records the duration
// and advances Now by it. Back-off, Retry-After, polling intervals and
// token expiry therefore cost no wall time, and tests can assert on the
// waits an adapter asked for.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

// NewFakeClock returns a clock at Epoch.
func NewFakeClock() *FakeClock { return &FakeClock{now: Epoch} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep records d and advances the clock by it.
func (c *FakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.sleeps = append(c.sleeps, d)
		c.now = c.now.Add(d)
	}
	return nil
}

// Advance moves the clock forward without a sleep (time passing between
// two pulls, a token expiring).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleeps returns the durations slept so far, in order.
func (c *FakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}
