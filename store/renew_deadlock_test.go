package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/morango-sync/morango/ids"
)

// One handle used by two goroutines, as a process that imports and exports
// at once: CreateTransfer reads the handle's instance id (db.mu) inside its
// write transaction, and RenewIfOlder begins its own: neither may hold what
// the other waits for.
func TestRenewIfOlderAndCreateTransferDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 300 {
			if err := d.db.CreateTransfer(ctx, &Transfer{ID: ids.Random(), Kind: "disk", Path: "x"}); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 300 {
			in, err := d.db.Instance(ctx)
			if err == nil {
				_, err = d.db.RenewIfOlder(ctx, in.Counter+1)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("CreateTransfer and RenewIfOlder on one handle wait for each other (db.mu against the write connection)")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
