package tiered

import (
	"encoding/json"
	"net/http"
)

// Health is a Cache's readiness, from one Stats snapshot: what a readiness
// probe or a status page needs, as JSON.
type Health struct {
	// Ready: the cache is open, its breaker is not open, and (with a stream
	// consumer) trust in L1 holds now. A cache that is not ready still
	// answers GetOrLoad from its loader; see Cache.HealthHandler.
	Ready bool `json:"ready"`
	// Reasons says why Ready is false, one short phrase per cause.
	Reasons []string `json:"reasons,omitempty"`
	// Closed: Close was called.
	Closed bool `json:"closed,omitempty"`
	// Breaker is the breaker's state: closed, half-open or open.
	Breaker string `json:"breaker"`
	// Stream describes the stream consumer.
	Stream StreamHealth `json:"stream"`
}

// StreamHealth is the stream consumer's part of Health.
type StreamHealth struct {
	// Enabled: a consumer runs (Options.DisableInvalidation unset).
	Enabled bool `json:"enabled"`
	// Trusted: trust in L1 holds now (Stats.Stream.Degraded is false).
	// Always true without a consumer: nothing is expected of the stream.
	Trusted bool `json:"trusted"`
	// LagSeconds is Stats.Stream.Lag in seconds; Shards the shards read now.
	LagSeconds float64 `json:"lag_seconds"`
	Shards     int     `json:"shards"`
}

// HealthOf derives a Health from a Stats snapshot (Closed is false: Stats
// does not say it; Cache.Health does).
func HealthOf(s Stats) Health {
	h := Health{
		Breaker: s.Breaker.State,
		Stream: StreamHealth{
			Enabled:    s.Stream.Enabled,
			Trusted:    !s.Stream.Degraded,
			LagSeconds: s.Stream.Lag.Seconds(),
			Shards:     s.Stream.Shards,
		},
	}
	if s.Breaker.State == "open" {
		h.Reasons = append(h.Reasons, "breaker open: DynamoDB is failing")
	}
	if !h.Stream.Trusted {
		h.Reasons = append(h.Reasons, "L1 not trusted: the stream consumer is behind or not yet started")
	}
	h.Ready = len(h.Reasons) == 0
	return h
}

// Health returns the cache's readiness now. Cheap enough for a probe every
// second: one Stats call.
func (c *Cache[V]) Health() Health {
	h := HealthOf(c.Stats())
	if c.isClosed.Load() {
		h.Closed = true
		h.Ready = false
		h.Reasons = append(h.Reasons, "closed")
	}
	return h
}

// HealthHandler serves Health as JSON, for readiness probes: status 200 when
// Ready, 503 otherwise, whatever the method (HEAD gets no body).
//
// Every pod shares one table, so a DynamoDB outage makes every pod unready at
// once, although each one keeps answering GetOrLoad from its loader (see
// Guarantees, "Outages"). Wire it to a readiness probe only if taking every
// pod out of service is what you want then; otherwise use it for monitoring,
// or combine Health with your own checks.
func (c *Cache[V]) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveHealth(w, r, c.Health())
	})
}

func serveHealth(w http.ResponseWriter, r *http.Request, h Health) {
	body, err := json.Marshal(h)
	if err != nil { // cannot happen: Health holds only plain fields
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if h.Ready {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
