package store

import (
	"context"
	"path/filepath"
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

// Opening a database whose instance is recorded as it is takes no write
// lock: morango status answers while an import (here another connection's
// write transaction) holds it, instead of waiting for it and failing with
// "database is locked".
func TestOpenAndStatusWhileAWriterHoldsTheLock(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "a")
	d.init(ctx)
	opts := &Options{SystemID: "sys-" + filepath.Base(d.path), NodeID: "node"}
	first, err := Open(ctx, d.path, opts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := first.Instance(ctx)
	first.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `ROLLBACK`)
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	db, err := Open(quick, d.path, opts)
	if err != nil {
		t.Fatalf("open while another connection writes: %v", err)
	}
	defer db.Close()
	st, err := db.Status(quick)
	if err != nil {
		t.Fatalf("status while another connection writes: %v", err)
	}
	if st.Instance.ID != want.ID {
		t.Errorf("instance %s, want %s", st.Instance.ID, want.ID)
	}
}
