package demo

import "github.com/tieredcache/tieredcache/tiered"

// fillCacheStats copies what the demo shows from tiered.Stats.
func fillCacheStats(s *nodeStats, st tiered.Stats) {
	s.L1Hits = st.L1.Hits
	s.L1Misses = st.L1.Misses
	s.L2Hits = st.L2.Hits
	s.L2Misses = st.L2.Misses
	s.L2Calls = st.L2.Calls
	s.L2Errors = st.L2.Errors
	s.L2Timeouts = st.L2.Timeouts
	s.Loads = st.Loads.Calls
	s.LoadErrors = st.Loads.Errors
	s.LeasesAcquired = st.Leases.Acquired
	s.LeaseWaits = st.Leases.Waits
	s.LeaseTimeouts = st.Leases.Timeouts
	s.StaleFillsDropped = st.Loads.StaleFillsDropped
	s.Refreshes = st.Refresh.Started
	s.RefreshErrors = st.Refresh.Errors
	s.Breaker = st.Breaker.State
	s.BreakerOpens = st.Breaker.Opens
	s.Invalidations = st.Stream.Invalidations + st.Stream.Replacements
	s.Flushes = st.Stream.Flushes
	s.Degraded = st.Stream.Degraded
	s.DegradedEpisodes = st.Stream.DegradedEpisodes
	s.LagLastMs = ms(st.Stream.RecordLag)
	s.LagMeanMs = ms(st.Stream.RecordLagMean)
	s.LagMaxMs = ms(st.Stream.RecordLagMax)
	switch {
	case !st.Stream.Enabled:
		s.Stream = "off"
	case !st.Stream.Degraded:
		s.Stream = "healthy"
	default:
		s.Stream = "unhealthy"
	}
	s.StreamErrors = st.Stream.Errors
	s.StreamLagMs = ms(st.Stream.Lag)
}
