package invalidation_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

func TestMain(m *testing.M) {
	code := m.Run()
	dynamolocal.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
