package deploy_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

type tfFile struct {
	variables map[string]*hclsyntax.Block
	resources map[string]*hclsyntax.Block // "type.name"
}

func loadTerraform(t *testing.T) tfFile {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(terraformFile)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	tf := tfFile{variables: map[string]*hclsyntax.Block{}, resources: map[string]*hclsyntax.Block{}}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		switch b.Type {
		case "variable":
			tf.variables[b.Labels[0]] = b
		case "resource":
			tf.resources[b.Labels[0]+"."+b.Labels[1]] = b
		}
	}
	return tf
}

// evalContext gives the variables their values and the table's ARN the form
// the JSON policies use; jsonencode is Terraform's (go-cty's stdlib).
func evalContext(vars map[string]string) *hcl.EvalContext {
	v := map[string]cty.Value{}
	for k, s := range vars {
		v[k] = cty.StringVal(s)
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var": cty.ObjectVal(v),
			"aws_dynamodb_table": cty.ObjectVal(map[string]cty.Value{
				"cache": cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(tableARN)}),
			}),
		},
		Functions: map[string]function.Function{"jsonencode": stdlib.JSONEncodeFunc},
	}
}

func evalString(t *testing.T, b *hclsyntax.Body, name string, ctx *hcl.EvalContext) string {
	t.Helper()
	a, ok := b.Attributes[name]
	if !ok {
		return ""
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", name, diags.Error())
	}
	if v.Type() == cty.Bool {
		if v.True() {
			return "true"
		}
		return "false"
	}
	return v.AsString()
}

func tfTableSpec(t *testing.T, tf tfFile, view string) tableSpec {
	t.Helper()
	var tables []string
	for k, b := range tf.resources {
		if b.Labels[0] == "aws_dynamodb_table" {
			tables = append(tables, k)
		}
	}
	if len(tables) != 1 || tables[0] != "aws_dynamodb_table.cache" {
		t.Fatalf("tables %v, want exactly aws_dynamodb_table.cache", tables)
	}
	body := tf.resources[tables[0]].Body
	ctx := evalContext(map[string]string{"table_name": "${TableName}", "stream_view_type": view})
	s := tableSpec{Attributes: map[string]string{}}
	s.BillingMode = evalString(t, body, "billing_mode", ctx)
	s.HashKey = evalString(t, body, "hash_key", ctx)
	s.StreamEnabled = evalString(t, body, "stream_enabled", ctx) == "true"
	s.StreamView = evalString(t, body, "stream_view_type", ctx)
	for name := range body.Attributes {
		switch name {
		case "name", "billing_mode", "hash_key", "stream_enabled", "stream_view_type":
		default:
			s.Extra = append(s.Extra, "attribute "+name)
		}
	}
	for _, b := range body.Blocks {
		switch b.Type {
		case "attribute":
			s.Attributes[evalString(t, b.Body, "name", ctx)] = evalString(t, b.Body, "type", ctx)
		case "ttl":
			s.TTLAttribute = evalString(t, b.Body, "attribute_name", ctx)
			s.TTLEnabled = evalString(t, b.Body, "enabled", ctx) == "true"
		default:
			s.Extra = append(s.Extra, "block "+b.Type)
		}
	}
	return s
}

// allowedViews reads the stream_view_type variable's default and the list its
// validation's contains() accepts.
func allowedViews(t *testing.T, tf tfFile) (allowed []string, def string) {
	t.Helper()
	v, ok := tf.variables["stream_view_type"]
	if !ok {
		t.Fatal("no variable stream_view_type")
	}
	def = evalString(t, v.Body, "default", nil)
	for _, b := range v.Body.Blocks {
		if b.Type != "validation" {
			continue
		}
		call, ok := b.Body.Attributes["condition"].Expr.(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "contains" {
			t.Fatal("validation condition is not contains([...], var.stream_view_type)")
		}
		list, diags := call.Args[0].Value(nil)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		for _, e := range list.AsValueSlice() {
			allowed = append(allowed, e.AsString())
		}
	}
	return allowed, def
}

// The Terraform file describes the same table, checked the same way.
func TestTerraformTableIsWhatNewAccepts(t *testing.T) {
	tf := loadTerraform(t)
	allowed, def := allowedViews(t, tf)
	checkSpec(t, "Terraform", func(view string) tableSpec { return tfTableSpec(t, tf, view) }, allowed, def)
	if cfn := loadCFN(t).Parameters["StreamViewType"]; !reflect.DeepEqual(allowed, cfn.AllowedValues) {
		t.Errorf("Terraform allows views %v, CloudFormation %v", allowed, cfn.AllowedValues)
	}
}

// The policies in the Terraform file, once jsonencode'd, are the JSON
// policies.
func TestTerraformPoliciesAreTheJSONPolicies(t *testing.T) {
	tf := loadTerraform(t)
	ctx := evalContext(map[string]string{"table_name": "${TableName}", "stream_view_type": "KEYS_ONLY"})
	for res, file := range map[string]string{"aws_iam_policy.runtime": runtimePolicyFile, "aws_iam_policy.admin": adminPolicyFile} {
		b, ok := tf.resources[res]
		if !ok {
			t.Fatalf("no %s", res)
		}
		var got policy
		if err := json.Unmarshal([]byte(evalString(t, b.Body, "policy", ctx)), &got); err != nil {
			t.Fatal(err)
		}
		if want := loadPolicy(t, file); !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs from %s:\n got %+v\nwant %+v", res, file, got, want)
		}
	}
}
