package l2

// ResolveFillOptions reports what opts ask of a Fill: ifVersion is set when
// IfVersion(version) is among them (the last one wins, as in Fill). It is for
// other implementations of this package's store contract (an in-memory twin
// in tests), which must honour the same options.
func ResolveFillOptions(opts ...FillOption) (ifVersion bool, version int64) {
	var fo fillOptions
	for _, fn := range opts {
		fn(&fo)
	}
	return fo.ifVersion, fo.version
}

// ResolveBatchGetOptions reports what opts ask of a BatchGet: includeVacant
// for IncludeVacant, and the OnCorrupt callback (nil when none). Like
// ResolveFillOptions, it is for other implementations of the store contract.
func ResolveBatchGetOptions(opts ...BatchGetOption) (includeVacant bool, onCorrupt func(key string, err error)) {
	var bo batchGetOptions
	for _, fn := range opts {
		fn(&bo)
	}
	return bo.vacant, bo.onCorrupt
}
