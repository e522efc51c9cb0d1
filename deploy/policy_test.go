package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Files this module ships; tests read them from the module's folder.
const (
	runtimePolicyFile = "iam/runtime-policy.json"
	adminPolicyFile   = "iam/admin-policy.json"
	cfnFile           = "cloudformation/tieredcache.json"
	terraformFile     = "terraform/main.tf"
)

// tableARN is the table's ARN as the JSON policies write it; ${...} are
// placeholders, as in CloudFormation's Fn::Sub.
const tableARN = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}"

type policy struct {
	Version   string
	Statement []statement
}

type statement struct {
	Sid      string
	Effect   string
	Action   []string
	Resource []string
}

func loadPolicy(t *testing.T, path string) policy {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	var p policy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.Version != "2012-10-17" {
		t.Fatalf("%s: Version %q", path, p.Version)
	}
	for _, s := range p.Statement {
		if s.Effect != "Allow" {
			t.Fatalf("%s: statement %s: Effect %q; these policies only allow", path, s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") {
				t.Fatalf("%s: statement %s: wildcard action %q is not least privilege", path, s.Sid, a)
			}
		}
	}
	return p
}

// actions is the set of actions p allows, sorted.
func (p policy) actions() []string {
	var out []string
	for _, s := range p.Statement {
		for _, a := range s.Action {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out
}

// allows reports whether p allows action on resource, after replacing the
// placeholders of its resources by vars.
func (p policy) allows(action, resource string, vars map[string]string) bool {
	for _, s := range p.Statement {
		if s.Effect != "Allow" || !slices.Contains(s.Action, action) {
			continue
		}
		for _, r := range s.Resource {
			for k, v := range vars {
				r = strings.ReplaceAll(r, "${"+k+"}", v)
			}
			if glob(r, resource) {
				return true
			}
		}
	}
	return false
}

// glob matches IAM resource patterns: '*' is any run of characters, '?' one.
func glob(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if glob(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && glob(pattern[1:], s[1:])
	}
	return s != "" && s[0] == pattern[0] && glob(pattern[1:], s[1:])
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"table/T/stream/*", "table/T/stream/2025-01-01T00:00:00.000", true},
		{"table/T/stream/*", "table/T", false},
		{"table/T", "table/T2", false},
		{"table/T", "table/T", true},
		{"a?c", "abc", true},
	} {
		if glob(c.p, c.s) != c.want {
			t.Errorf("glob(%q, %q) != %v", c.p, c.s, c.want)
		}
	}
}

// The runtime policy never grants table setup; the admin policy grants only
// what setup needs.
func TestPoliciesAreSplit(t *testing.T) {
	rt, ad := loadPolicy(t, runtimePolicyFile), loadPolicy(t, adminPolicyFile)
	for _, a := range []string{"dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"} {
		if slices.Contains(rt.actions(), a) {
			t.Errorf("runtime policy grants %s", a)
		}
		if !slices.Contains(ad.actions(), a) {
			t.Errorf("admin policy lacks %s", a)
		}
	}
	// Nothing in the library changes a table's stream or capacity.
	for _, p := range []policy{rt, ad} {
		if slices.Contains(p.actions(), "dynamodb:UpdateTable") {
			t.Errorf("a policy grants dynamodb:UpdateTable")
		}
	}
	for _, p := range []policy{rt, ad} {
		for _, s := range p.Statement {
			for _, r := range s.Resource {
				if r != tableARN && r != tableARN+"/stream/*" {
					t.Errorf("statement %s: resource %q is neither the table nor its stream", s.Sid, r)
				}
			}
		}
	}
}
