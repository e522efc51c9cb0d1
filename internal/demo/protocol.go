package demo

// The parent and its node processes talk in JSON lines.
//
//	node → parent (stdout): ready, stats (every interval), ack (one per
//	                        acknowledged or uncertain write), drained, final
//	parent → node (stdin):  start, ack (every other node's writes), finish,
//	                        resumed (-freeze: the reader was frozen, now resumed)
//
// A node's stderr is kept by the parent and shown only if the node fails.

import "time"

// Message types.
const (
	msgReady   = "ready"   // node: cache built, stream consumer started
	msgStart   = "start"   // parent: every node is ready, start the workload
	msgStats   = "stats"   // node: cumulative counters
	msgAck     = "ack"     // node: a write it made; parent: another node's write
	msgDrained = "drained" // node: workload stopped, every ack of ours is out
	msgFinish  = "finish"  // parent: every node drained and every ack relayed
	msgFinal   = "final"   // node: last stats, after the final check
	msgResumed = "resumed" // parent: -freeze: you were frozen from F.Stop to F.Cont
)

type message struct {
	T     string     `json:"t"`
	Stats *nodeStats `json:"s,omitempty"`
	Ack   *ackMsg    `json:"a,omitempty"`
	F     *freezeMsg `json:"f,omitempty"`
	// Metrics is the URL of the node's metrics (ready; "" without a node hook
	// that serves them).
	Metrics string `json:"m,omitempty"`
}

// freezeMsg is one freeze of the reader (-freeze), in Unix nanoseconds: Stop
// was taken after SIGSTOP was sent, Cont before SIGCONT was, so every read
// that started after Cont ran after the freeze.
type freezeMsg struct {
	Stop int64 `json:"stop"`
	Cont int64 `json:"cont"`
}

// ackMsg is one write as the staleness checker needs it. Times are Unix
// nanoseconds on the one machine all nodes share.
type ackMsg struct {
	Node      string `json:"n"`
	Key       string `json:"k"`
	Value     string `json:"v,omitempty"` // "" for a Delete
	Start     int64  `json:"s"`
	End       int64  `json:"e"`
	Uncertain bool   `json:"u,omitempty"` // the write failed: it may or may not have landed
}

// nodeStats is a node's cumulative counters (rates are computed by the
// parent from consecutive snapshots).
type nodeStats struct {
	Node    string  `json:"node"`
	Elapsed float64 `json:"elapsed"` // seconds since the workload started

	// The workload's own counts.
	Reads      uint64 `json:"reads"`
	NotFound   uint64 `json:"not_found"` // reads answered "not found" (deleted keys)
	ReadErrors uint64 `json:"read_errors"`
	// FirstReadErr is the text of this node's first failed read ("" if none).
	FirstReadErr string `json:"first_read_err,omitempty"`
	Sets         uint64 `json:"sets"`
	Deletes      uint64 `json:"deletes"`
	WriteErrors  uint64 `json:"write_errors"`
	SourceReads  uint64 `json:"source_reads"` // loader calls that reached the source of truth

	// From tiered.Stats.
	L1Hits            uint64  `json:"l1_hits"`
	L1Misses          uint64  `json:"l1_misses"`
	L2Hits            uint64  `json:"l2_hits"`
	L2Misses          uint64  `json:"l2_misses"`
	L2Calls           uint64  `json:"l2_calls"`
	L2Errors          uint64  `json:"l2_errors"`
	L2Timeouts        uint64  `json:"l2_timeouts"` // of L2Errors: calls past CallTimeout
	Loads             uint64  `json:"loads"`
	LoadErrors        uint64  `json:"load_errors"`
	LeasesAcquired    uint64  `json:"leases_acquired"`
	LeaseWaits        uint64  `json:"lease_waits"`
	LeaseTimeouts     uint64  `json:"lease_timeouts"`
	StaleFillsDropped uint64  `json:"stale_fills_dropped"`
	Refreshes         uint64  `json:"refreshes"`
	RefreshErrors     uint64  `json:"refresh_errors"`
	L2Unavailable     uint64  `json:"l2_unavailable_writes"` // writes refused with ErrL2Unavailable
	Breaker           string  `json:"breaker"`
	BreakerOpens      uint64  `json:"breaker_opens"`
	Invalidations     uint64  `json:"invalidations"`
	Flushes           uint64  `json:"flushes"`
	Degraded          bool    `json:"degraded"`
	DegradedEpisodes  uint64  `json:"degraded_episodes"`
	LagLastMs         float64 `json:"lag_last_ms"`
	LagMeanMs         float64 `json:"lag_mean_ms"`
	LagMaxMs          float64 `json:"lag_max_ms"`
	Stream            string  `json:"stream"` // healthy, unhealthy, off
	StreamErrors      uint64  `json:"stream_errors"`
	StreamLagMs       float64 `json:"stream_lag_ms"` // the longest time since a followed shard was drained

	// Write acknowledged on one node → its stream eviction here, measured by
	// the demo through Options.OnInvalidate (milliseconds).
	AckLagN   int     `json:"ack_lag_n"`
	AckLagP50 float64 `json:"ack_lag_p50_ms"`
	AckLagP99 float64 `json:"ack_lag_p99_ms"`
	AckLagMax float64 `json:"ack_lag_max_ms"`

	// The staleness checker.
	Checked    int      `json:"checked"`
	Violations int      `json:"violations"`
	Unverified int      `json:"unverified"` // reads of a write whose outcome is unknown
	Samples    []string `json:"violation_samples,omitempty"`

	// -freeze, on the reader, final stats only: what happened after each resume.
	Freezes []freezeReport `json:"freezes,omitempty"`

	// With a node hook that serves metrics, final stats only: the URL and one
	// scrape of it (tieredcache_* sample lines, histogram buckets left out),
	// taken after the final check, before the cache was closed.
	MetricsURL    string   `json:"metrics_url,omitempty"`
	MetricsScrape []string `json:"metrics_scrape,omitempty"`

	// A mode's own fields (WithNodeStatus), with every report.
	Fields []Field `json:"fields,omitempty"`
}

func (s *nodeStats) requests() uint64 { return s.Reads + s.Sets + s.Deletes }

// ms converts a duration to float milliseconds for JSON.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
