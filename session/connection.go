package session

import (
	"context"

	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/fsic"
	"github.com/morango-sync/morango/store"
)

// Connection carries transfers between this device and a peer. The
// DiskConnection does it with bundle files; a network connection will
// implement the same interface.
type Connection interface {
	// Kind names the transport, recorded on the sync session ("disk").
	Kind() string
	// Path names the peer or file, recorded on the sync session.
	Path() string
	// Peer returns what the connection knows of the peer before a push:
	// its certificate chain and what it holds under filter. A nil Holdings
	// means unknown: everything under the filter is sent.
	Peer(ctx context.Context, filter []string) (*Peer, error)
	// Send carries an outgoing transfer to the peer.
	Send(ctx context.Context, out *Outgoing, p *Progress) error
	// Receive opens an incoming transfer.
	Receive(ctx context.Context) (Incoming, error)
}

// Peer is what is known of the other side of a push.
type Peer struct {
	Instance string
	CertID   string
	Chain    []certs.Link
	Holdings *fsic.V2
	// Filter holds the partitions the peer's manifest speaks for (its
	// holdings cover them alone); nil: all its certificate may read.
	Filter []string
}

// Outgoing is a transfer leaving this device.
type Outgoing struct {
	TransferID string
	Profile    string
	Instance   string
	CertID     string
	Chain      []certs.Link
	Signer     *certs.Certificate // holds the private key
	Recipient  *Peer              // nil: for anyone
	Filter     []string
	FSIC       fsic.V2
	PeerFSIC   *fsic.V2
	Counts     map[string]int64
	Total      int64
	// Records calls fn for every record; fn must not keep the record.
	Records func(ctx context.Context, fn func(*store.Record) error) error
}

// IncomingHeader describes an incoming transfer before its records are read.
type IncomingHeader struct {
	TransferID     string
	Profile        string
	SenderInstance string
	SenderCert     string
	Chain          []certs.Link
	RecipientInst  string
	RecipientCert  string
	Filter         []string
	// FSIC holds the sender's counters. It is empty until Records has read
	// the transfer to its end: counters are taken only from a verified
	// transfer.
	FSIC fsic.V2
	// PeerFSIC holds the recipient's counters the transfer was computed
	// against (from its manifest), or nil; set when FSIC is.
	PeerFSIC *fsic.V2
	Counts   map[string]int64
	Total    int64
}

// Incoming is a transfer arriving at this device. Records may be read more
// than once; every read verifies the transfer's integrity and signature
// before it returns without error, with the public key the verify callback
// given to Receive's caller approves.
type Incoming interface {
	Header() *IncomingHeader
	// Digest identifies the transfer's content (the bundle's SHA-256).
	Digest() string
	// Records calls fn for every record in order, then checks integrity and
	// signature; fn must not keep the record.
	Records(ctx context.Context, trust Trust, fn func(*store.Record) error) error
	Close() error
}

// Trust checks an incoming transfer's header (its certificate chain) and
// returns the signer's certificate, whose key must have signed it.
type Trust func(h *IncomingHeader) (*certs.Certificate, error)
