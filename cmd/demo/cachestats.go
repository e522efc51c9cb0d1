package main

import "github.com/tieredcache/tieredcache/tiered"

// fillCacheStats copies what the demo shows from tiered.Stats.
func fillCacheStats(s *nodeStats, st tiered.Stats) {
	// Converted, so that any integer type l1 settles on fits.
	s.L1Hits = uint64(st.L1.Hits)
	s.L1Misses = uint64(st.L1.Misses)
	s.L2Hits = st.L2Hits
	s.L2Misses = st.L2Misses
	s.L2Calls = st.L2Calls
	s.L2Errors = st.L2Errors
	s.Loads = st.Loads
	s.LoadErrors = st.LoadErrors
	s.LeasesAcquired = st.LeasesAcquired
	s.LeaseWaits = st.LeaseWaits
	s.LeaseTimeouts = st.LeaseTimeouts
	s.StaleFillsDropped = st.StaleFillsDropped
	s.Refreshes = st.Refreshes
	s.RefreshErrors = st.RefreshErrors
	s.Breaker = st.BreakerState
	s.BreakerOpens = st.BreakerOpens
	s.Invalidations = st.Invalidations + st.Replacements
	s.Flushes = st.Flushes
	s.Degraded = st.Degraded
	s.DegradedEpisodes = st.DegradedEpisodes
	s.LagLastMs = ms(st.LagLast)
	s.LagMeanMs = ms(st.LagMean)
	s.LagMaxMs = ms(st.LagMax)
	switch {
	case st.Stream == nil:
		s.Stream = "off"
	case st.Stream.Healthy:
		s.Stream = "healthy"
	default:
		s.Stream = "unhealthy"
	}
	if st.Stream != nil {
		s.StreamErrors = uint64(max(st.Stream.Errors, 0))
		s.StreamLagMs = ms(st.Stream.Lag)
	}
}
