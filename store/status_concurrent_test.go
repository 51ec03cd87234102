package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Status reads the certificates before it takes a read transaction (one
// of the handle's four read connections): had it read them through the
// handle while holding one, four Status calls at once (an app's status
// page polled from several requests) would each hold a connection and wait
// for another, for good.
func TestConcurrentStatusDoesNotDeadlock(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := d.db.Status(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("concurrent Status calls on one handle wait for each other's read connections")
	}
}
