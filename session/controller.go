// Package session runs transfers: the Connection abstraction, the stages a
// transfer goes through (the original's INITIALIZING, SERIALIZING, QUEUING,
// TRANSFERRING, DEQUEUING, DESERIALIZING, CLEANUP), recorded on
// transfer-session rows, with started / in-progress / completed events; and
// DiskConnection, which moves records through bundle files.
package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/morango-sync/morango/store"
)

// Stage is a step of a transfer.
type Stage int

// The stages, in the original's order and precedence.
const (
	Initializing  Stage = 10
	Serializing   Stage = 20
	Queuing       Stage = 30
	Transferring  Stage = 40
	Dequeuing     Stage = 50
	Deserializing Stage = 60
	Cleanup       Stage = 70
)

// Stages lists the stages in order.
var Stages = []Stage{Initializing, Serializing, Queuing, Transferring, Dequeuing, Deserializing, Cleanup}

func (s Stage) String() string {
	switch s {
	case Initializing:
		return "initializing"
	case Serializing:
		return "serializing"
	case Queuing:
		return "queuing"
	case Transferring:
		return "transferring"
	case Dequeuing:
		return "dequeuing"
	case Deserializing:
		return "deserializing"
	case Cleanup:
		return "cleanup"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Status is how far a stage has got.
type Status string

// The statuses of a stage.
const (
	Pending   Status = "pending"
	Started   Status = "started"
	Completed Status = "completed"
	Errored   Status = "errored"
)

// EventKind says what an Event reports.
type EventKind string

// The kinds of events, the original's signals.
const (
	EventStarted    EventKind = "started"
	EventInProgress EventKind = "in_progress"
	EventCompleted  EventKind = "completed"
)

// Event reports progress of one stage of a transfer.
type Event struct {
	Transfer string    `json:"transfer"`
	Push     bool      `json:"push"`
	Stage    Stage     `json:"-"`
	Kind     EventKind `json:"event"`
	// Done and Total count records; Total is 0 when unknown.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Bytes counts bytes written or read so far.
	Bytes int64     `json:"bytes"`
	Err   string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Observer receives events. It is called synchronously and must be quick.
type Observer func(Event)

// Operation does the work of one stage. It reports progress through p.
type Operation func(ctx context.Context, p *Progress) error

// Progress is handed to an operation to report its progress.
type Progress struct {
	c     *controller
	stage Stage
	last  time.Time
}

// Report records progress: done of total records, and bytes moved. Events
// are emitted at most every 100 ms, and always for the last record.
func (p *Progress) Report(done, total, bytes int64) {
	t := p.c.t
	t.Done, t.Total, t.Bytes = done, total, bytes
	if n := time.Now(); n.Sub(p.last) >= 100*time.Millisecond || (total > 0 && done == total) {
		p.last = n
		p.c.emit(p.stage, EventInProgress, "")
	}
}

type controller struct {
	db  *store.DB
	t   *store.Transfer
	obs Observer
	// persist, when set, records the transfer's state inside an open
	// write transaction (an import's) instead of in one of its own.
	persist func(ctx context.Context, t *store.Transfer) error
}

func (c *controller) save(ctx context.Context) error {
	if c.persist != nil {
		return c.persist(ctx, c.t)
	}
	return c.db.UpdateTransfer(ctx, c.t)
}

func (c *controller) emit(stage Stage, kind EventKind, errText string) {
	if c.obs == nil {
		return
	}
	c.obs(Event{Transfer: c.t.ID, Push: c.t.Push, Stage: stage, Kind: kind,
		Done: c.t.Done, Total: c.t.Total, Bytes: c.t.Bytes, Err: errText, At: time.Now()})
}

// run runs the operations of each stage in order, recording the stage and
// its status on the transfer-session row before and after each one. A stage
// without an operation completes at once. The first error stops the
// transfer; its stage is recorded as errored.
//
// An error that follows a cancellation is reported as the cancellation:
// cancelling a context rolls back the transactions and closes the
// statements that run under it, so the operation that notices may fail
// with "statement is closed" or "transaction has already been committed or
// rolled back" instead, and callers must still see an interruption.
func (c *controller) run(ctx context.Context, ops map[Stage]Operation) (err error) {
	defer func() {
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}()
	for _, st := range Stages {
		c.t.Stage, c.t.Status = st.String(), string(Started)
		if err := c.save(ctx); err != nil {
			return err
		}
		c.emit(st, EventStarted, "")
		var err error
		if op := ops[st]; op != nil {
			err = op(ctx, &Progress{c: c, stage: st})
		}
		if err != nil {
			c.t.Status, c.t.Error = string(Errored), err.Error()
			// An interrupted transfer stays active so that the next run
			// resumes it; any other failure is final.
			c.t.Active = ctx.Err() != nil
			// Record the failure even when ctx was cancelled; if that fails
			// too, the row still says the stage started.
			c.persist = nil
			_ = c.save(context.WithoutCancel(ctx))
			c.emit(st, EventCompleted, err.Error())
			return err
		}
		c.t.Status = string(Completed)
		if st == Cleanup {
			c.t.Active = false
		}
		if err := c.save(ctx); err != nil {
			return err
		}
		c.emit(st, EventCompleted, "")
	}
	return nil
}
