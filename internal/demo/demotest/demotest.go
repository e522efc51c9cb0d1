// Package demotest runs a demo main's test binary as the demo itself, for
// the tests of internal/demo and of the mains built on it (cmd/demo,
// otel/cmd/demo, fanout/cmd/demo): the test runs the real parent and node
// processes (built with -race when the test is) without a separate go build.
package demotest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// AsMain reports whether this process is the test binary started by
// Command with env (its TestMain then runs the demo and exits).
func AsMain(env string) bool { return os.Getenv(env) == "1" }

// Command returns a command that runs this test binary as the demo (env set
// to 1 in its environment) with args, ended with ctx.
func Command(t testing.TB, ctx context.Context, env string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// ReadSummary decodes the demo's -summary-json file at path into a T, the
// part of the summary the caller reads.
func ReadSummary[T any](t testing.TB, path string) T {
	t.Helper()
	var s T
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no summary written: %v", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary: %v", err)
	}
	return s
}
