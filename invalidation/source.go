package invalidation

import (
	"context"
	"log/slog"
	"time"
)

// Source is a pluggable origin of invalidation events, used by a cache
// instead of its own stream Consumer: for example the fan-out module's pod
// source, which receives batches that one bridge read from the stream and
// reads no stream itself.
//
// A Source makes the same promises to its Sink as a Consumer does (see Sink):
// no concurrent calls; Changed for every change it learns of; TrustUntil with
// a deadline on SourceConfig.Now's clock that the sink compares with its own
// clock on every use (a zero until withdraws trust); Flush before it grants
// trust again after trust was withdrawn or had lapsed, and whenever it may
// have missed changes.
type Source interface {
	// Start begins delivering events to cfg.Sink. ctx bounds only Start.
	// The sink begins untrusted: a Source may grant trust before Start
	// returns or later. A Source is started at most once.
	Start(ctx context.Context, cfg SourceConfig) error
	// Close stops every goroutine the Source started and waits for them;
	// no Sink method is called after it returns. Safe to call twice.
	Close() error
}

// HashingSource is a Source whose changes may name items by Change.KeyHash
// instead of their partition key. A cache whose Source reports true keeps an
// index from the hash of each key it holds or is filling to the key (the L1
// hit path does not touch it).
type HashingSource interface {
	Source
	SendsKeyHashes() bool
}

// SourceConfig is what a cache gives its Source.
type SourceConfig struct {
	// Sink receives the events.
	Sink Sink
	// StaleAfter is the trust window: T/2 of the cache's staleness bound.
	// Trust granted must not outlast StaleAfter after the moment up to which
	// every change was delivered.
	StaleAfter time.Duration
	// Now is the clock deadlines are read from (carries a monotonic
	// reading). Never nil.
	Now func() time.Time
	// Logger gets operational events (never keys or values). Never nil.
	Logger *slog.Logger
}

// StatsSource is implemented by a Source that reports its state; a cache
// shows it as its stream statistics (the fields that apply; zero otherwise).
type StatsSource interface {
	Stats() Stats
}
