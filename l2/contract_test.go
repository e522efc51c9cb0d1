package l2_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/storetest"
	"github.com/tieredcache/tieredcache/l2"
)

// TestContract runs the store contract (internal/storetest) against the
// table on DynamoDB Local: the same suite internal/memstore passes, so the
// in-memory twin that tiered's -short tests use behaves as this does.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		e := newEnv(t, func(o *l2.Options) { o.Namespace, o.Writer = storetest.Namespace, storetest.Writer })
		return storetest.Harness{
			Store:   e.tbl,
			Now:     e.clock.Now,
			Advance: e.clock.Advance,
			Other: func(t *testing.T, writer string) storetest.Store {
				o := e.opts
				o.Writer = writer
				tbl, err := l2.New(o)
				if err != nil {
					t.Fatal(err)
				}
				return tbl
			},
			Corrupt: func(t *testing.T, key string) {
				// A value of the wrong type, as a foreign writer could leave.
				e.putRaw(t, map[string]types.AttributeValue{"pk": S(storetest.Namespace + "#" + key), "v": S("not bytes")})
			},
		}
	})
}
