package session

import (
	"context"
	"errors"
	"testing"

	"github.com/morango-sync/morango/store"
)

// Cancelling a context closes the statements and rolls back the
// transactions under it, and the store may report that ("sql: statement is
// closed") before it reports the cancellation. A transfer that fails so is
// still an interruption: it stays active to resume and says it was
// cancelled.
func TestRunReportsCancellationAfterClosedStatement(t *testing.T) {
	dev := newDevice(t, "a")
	ctx := context.Background()
	tr := &store.Transfer{ID: "00000000000000000000000000000001", Kind: "disk", Path: "x", SHA256: "s"}
	if err := dev.db.CreateTransfer(ctx, tr); err != nil {
		t.Fatal(err)
	}
	c := &controller{db: dev.db, t: tr}
	cctx, cancel := context.WithCancel(ctx)
	closed := errors.New("read local records: sql: statement is closed")
	err := c.run(cctx, map[Stage]Operation{
		Dequeuing: func(context.Context, *Progress) error {
			cancel()
			return closed
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context canceled", err)
	}
	if err.Error() != "context canceled (read local records: sql: statement is closed)" {
		t.Errorf("message %q keeps neither the cancellation nor what failed", err)
	}
	got, err := dev.db.ActiveTransfer(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.ID != tr.ID || got.Status != string(Errored) {
		t.Fatalf("transfer after the interruption: %+v, want it active and errored", got)
	}

	// Without a cancellation the error is the operation's own.
	tr2 := &store.Transfer{ID: "00000000000000000000000000000002", Kind: "disk", Path: "x", SHA256: "s"}
	if err := dev.db.CreateTransfer(ctx, tr2); err != nil {
		t.Fatal(err)
	}
	c = &controller{db: dev.db, t: tr2}
	if err := c.run(ctx, map[Stage]Operation{Dequeuing: func(context.Context, *Progress) error { return closed }}); err != closed {
		t.Fatalf("run: %v, want the operation's error unchanged", err)
	}
}
