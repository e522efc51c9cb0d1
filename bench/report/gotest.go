package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// result is one line of `go test -bench` output.
type result struct {
	Name    string             // without the -GOMAXPROCS suffix
	Procs   int                // GOMAXPROCS the line ran at (-cpu)
	N       int64              // iterations
	Metrics map[string]float64 // value by unit: "ns/op", "ratio", ...
}

// benchOutput is a parsed `go test -bench` run.
type benchOutput struct {
	CPU     string // the "cpu:" line
	Results []result
}

var procsSuffix = regexp.MustCompile(`^(.*)-(\d+)$`)

// parseBench parses `go test -bench` output. A benchmark line is its name,
// its iteration count, then value/unit pairs; other lines are ignored.
func parseBench(text string) (benchOutput, error) {
	var out benchOutput
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			out.CPU = strings.TrimSpace(cpu)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's name alone (its log follows), or not a result
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		r := result{Name: f[0], Procs: 1, N: n, Metrics: map[string]float64{}}
		if m := procsSuffix.FindStringSubmatch(f[0]); m != nil {
			r.Name = m[1]
			r.Procs, _ = strconv.Atoi(m[2])
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return out, fmt.Errorf("%s: value %q: %w", f[0], f[i], err)
			}
			r.Metrics[f[i+1]] = v
		}
		out.Results = append(out.Results, r)
	}
	return out, sc.Err()
}

// find returns the result of benchmark name at procs.
func (o benchOutput) find(name string, procs int) (result, bool) {
	for _, r := range o.Results {
		if r.Name == name && r.Procs == procs {
			return r, true
		}
	}
	return result{}, false
}

// metric returns a result's metric, or an error naming what is missing.
func (r result) metric(unit string) (float64, error) {
	v, ok := r.Metrics[unit]
	if !ok {
		return 0, fmt.Errorf("%s-%d: no %q metric", r.Name, r.Procs, unit)
	}
	return v, nil
}

// goTest runs `go test args...` in dir with extra environment, writes its
// combined output to rawPath and returns the parsed benchmarks. A failing
// run is an error: a report is made from complete runs only.
func goTest(dir, rawPath string, env []string, args ...string) (benchOutput, error) {
	cmd := exec.Command("go", append([]string{"test"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	logf("go test %s (in %s)", strings.Join(args, " "), dir)
	out, err := cmd.CombinedOutput()
	if werr := os.WriteFile(rawPath, out, 0o644); werr != nil {
		return benchOutput{}, werr
	}
	if err != nil {
		return benchOutput{}, fmt.Errorf("go test %s: %w (output in %s)", strings.Join(args, " "), err, filepath.Base(rawPath))
	}
	return parseBench(string(out))
}

// execOutput runs a command and returns its standard output.
func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}
