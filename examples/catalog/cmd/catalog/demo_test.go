package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// The demo (make example) runs to its end on a small load: two replica
// processes, the load, and a write on one replica served by the other.
func TestDemo(t *testing.T) {
	srv := dynamolocal.ForTest(t)
	bin := filepath.Join(t.TempDir(), "catalog")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo", "-ddb-endpoint", srv.Endpoint(), "-products", "100", "-requests", "400", "-workers", "4").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"HTTP statuses map[200:400]", "both: L1 hit ratio", "replica 2 serves the new price"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
