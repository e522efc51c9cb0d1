package tiered

import "github.com/tieredcache/tieredcache/l2"

// store is what the cache uses of its table: l2.Store, the data-path
// methods of *l2.Table with their documented semantics. Production uses
// *l2.Table; tests may use the in-memory twin in internal/memstore, which
// passes the same contract suite (internal/storetest). Setup (EnsureTable,
// CheckTable) is not part of it: New does that on the concrete table before
// the seam.
type store = l2.Store
