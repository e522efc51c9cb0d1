package deploy_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

type cfnTemplate struct {
	Parameters map[string]struct {
		Type          string
		Default       string
		AllowedValues []string
	}
	Resources map[string]struct {
		Type       string
		Properties map[string]json.RawMessage
	}
}

func loadCFN(t *testing.T) cfnTemplate {
	t.Helper()
	b, err := os.ReadFile(cfnFile)
	if err != nil {
		t.Fatal(err)
	}
	var tpl cfnTemplate
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatal(err)
	}
	return tpl
}

// cfnTableSpec reads the AWS::DynamoDB::Table resource, with the
// StreamViewType parameter set to view.
func cfnTableSpec(t *testing.T, tpl cfnTemplate, view string) tableSpec {
	t.Helper()
	var tables []string
	for name, r := range tpl.Resources {
		if r.Type == "AWS::DynamoDB::Table" {
			tables = append(tables, name)
		}
	}
	if len(tables) != 1 {
		t.Fatalf("template declares tables %v, want exactly one", tables)
	}
	props := tpl.Resources[tables[0]].Properties
	var s tableSpec
	s.Attributes = map[string]string{}
	get := func(key string, v any) {
		if raw, ok := props[key]; ok {
			if err := json.Unmarshal(raw, v); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
		}
	}
	get("BillingMode", &s.BillingMode)
	var ks []struct{ AttributeName, KeyType string }
	get("KeySchema", &ks)
	for _, k := range ks {
		if k.KeyType == "HASH" {
			s.HashKey = k.AttributeName
		} else {
			s.Extra = append(s.Extra, k.KeyType+" key "+k.AttributeName)
		}
	}
	var ads []struct{ AttributeName, AttributeType string }
	get("AttributeDefinitions", &ads)
	for _, a := range ads {
		s.Attributes[a.AttributeName] = a.AttributeType
	}
	var stream struct{ StreamViewType json.RawMessage }
	get("StreamSpecification", &stream)
	if stream.StreamViewType != nil {
		s.StreamEnabled = true
		var ref struct{ Ref string }
		if json.Unmarshal(stream.StreamViewType, &ref) == nil && ref.Ref == "StreamViewType" {
			s.StreamView = view
		} else if err := json.Unmarshal(stream.StreamViewType, &s.StreamView); err != nil {
			t.Fatalf("StreamViewType: %v", err)
		}
	}
	var ttl struct {
		AttributeName string
		Enabled       bool
	}
	get("TimeToLiveSpecification", &ttl)
	s.TTLAttribute, s.TTLEnabled = ttl.AttributeName, ttl.Enabled
	known := []string{"TableName", "BillingMode", "KeySchema", "AttributeDefinitions", "StreamSpecification", "TimeToLiveSpecification"}
	for k := range props {
		if !slices.Contains(known, k) {
			s.Extra = append(s.Extra, "property "+k)
		}
	}
	return s
}

// The CloudFormation template describes exactly the table New accepts,
// checked with the code New runs (l2.CheckDescription).
func TestCloudFormationTableIsWhatNewAccepts(t *testing.T) {
	tpl := loadCFN(t)
	p := tpl.Parameters["StreamViewType"]
	checkSpec(t, "CloudFormation", func(view string) tableSpec { return cfnTableSpec(t, tpl, view) }, p.AllowedValues, p.Default)
}

// cfnPolicy returns the managed policy resource's document, with Fn::Sub
// strings written as the JSON policies write them (${Table}, the table
// resource's Ref, is its name: ${TableName}).
func cfnPolicy(t *testing.T, tpl cfnTemplate, resource string) policy {
	t.Helper()
	r, ok := tpl.Resources[resource]
	if !ok || r.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("no AWS::IAM::ManagedPolicy %s", resource)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Sid, Effect string
			Action      []string
			Resource    []struct {
				Sub string `json:"Fn::Sub"`
			}
		}
	}
	if err := json.Unmarshal(r.Properties["PolicyDocument"], &doc); err != nil {
		t.Fatal(err)
	}
	p := policy{Version: doc.Version}
	for _, s := range doc.Statement {
		st := statement{Sid: s.Sid, Effect: s.Effect, Action: s.Action}
		for _, res := range s.Resource {
			if res.Sub == "" {
				t.Fatalf("%s %s: resource is not an Fn::Sub string", resource, s.Sid)
			}
			st.Resource = append(st.Resource, strings.ReplaceAll(res.Sub, "${Table}", "${TableName}"))
		}
		p.Statement = append(p.Statement, st)
	}
	return p
}

// The policies embedded in the template are the JSON policies.
func TestCloudFormationPoliciesAreTheJSONPolicies(t *testing.T) {
	tpl := loadCFN(t)
	for res, file := range map[string]string{"RuntimePolicy": runtimePolicyFile, "AdminPolicy": adminPolicyFile} {
		got, want := cfnPolicy(t, tpl, res), loadPolicy(t, file)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs from %s:\n got %+v\nwant %+v", res, file, got, want)
		}
	}
	var types []string
	for _, r := range tpl.Resources {
		types = append(types, r.Type)
	}
	sort.Strings(types)
	if want := []string{"AWS::DynamoDB::Table", "AWS::IAM::ManagedPolicy", "AWS::IAM::ManagedPolicy"}; !reflect.DeepEqual(types, want) {
		t.Errorf("resources %v, want %v", types, want)
	}
}
