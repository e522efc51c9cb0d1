package catalog_test

import (
	"os"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tieredcache/tieredcache/examples/catalog"
)

const manifest = "../../deploy/kubernetes/catalog.yaml"

type deployment struct {
	Kind string
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Name string
					Args []string
					Env  []struct{ Name, Value string }
				}
			}
		}
	}
}

// The Deployment sets every variable the service requires, only variables it
// reads, with values its config loader accepts.
func TestManifestEnvironmentIsWhatTheServiceReads(t *testing.T) {
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var d deployment
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Kind != "Deployment" || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want a Deployment with one container, got %q with %d", d.Kind, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("container args %v, want [serve]", c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s set twice", e.Name)
		}
		env[e.Name] = e.Value
	}
	var read []string
	cfg, err := catalog.LoadConfig(func(name string) string {
		read = append(read, name)
		return env[name]
	})
	if err != nil {
		t.Fatalf("the service refuses the manifest's environment: %v", err)
	}
	for name := range env {
		if !slices.Contains(read, name) {
			t.Errorf("the manifest sets %s, which the service never reads", name)
		}
	}
	for _, e := range catalog.EnvVars {
		if !slices.Contains(read, e.Name) {
			t.Errorf("EnvVars lists %s but LoadConfig does not read it", e.Name)
		}
		if e.Required && env[e.Name] == "" {
			t.Errorf("the manifest does not set %s, which the service requires", e.Name)
		}
	}
	if cfg.CreateTable {
		t.Error("the manifest lets pods create the table: they run with the runtime policy only")
	}
}

// A missing required variable is refused, naming it.
func TestLoadConfigRequires(t *testing.T) {
	_, err := catalog.LoadConfig(func(name string) string {
		if name == "CACHE_TABLE" {
			return ""
		}
		return map[string]string{"CATALOG_DB": "x.db", "AWS_REGION": "eu-west-1"}[name]
	})
	if err == nil {
		t.Fatal("no error without CACHE_TABLE")
	}
}
