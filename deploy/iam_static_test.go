package deploy_test

import (
	"go/ast"
	"go/token"
	"go/types"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// libraryPackages are the packages a service imports; cmd/ (the demo, whose
// source-of-truth table is not the cache's), internal/ (test fixtures) and
// bench/ are not the library.
func isLibrary(pkgPath string) bool {
	rest, ok := strings.CutPrefix(pkgPath, "github.com/tieredcache/tieredcache/")
	if !ok {
		return false
	}
	top, _, _ := strings.Cut(rest, "/")
	return top != "cmd" && top != "internal" && top != "bench"
}

var sdkPackages = []string{
	"github.com/aws/aws-sdk-go-v2/service/dynamodb",
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams",
}

// sdkOperation returns the operation a call performs when the called
// function takes a *<Op>Input of the DynamoDB or DynamoDB Streams SDK: a
// method of *dynamodb.Client or *dynamodbstreams.Client, of an interface that
// wraps them (l2.API, invalidation.StreamsAPI, invalidation.TableAPI), or a
// paginator or waiter constructor.
func sdkOperation(sig *types.Signature) (string, bool) {
	for i := 0; i < sig.Params().Len(); i++ {
		ptr, ok := sig.Params().At(i).Type().(*types.Pointer)
		if !ok {
			continue
		}
		named, ok := ptr.Elem().(*types.Named)
		if !ok || named.Obj().Pkg() == nil || !slices.Contains(sdkPackages, named.Obj().Pkg().Path()) {
			continue
		}
		if op, ok := strings.CutSuffix(named.Obj().Name(), "Input"); ok {
			return op, true
		}
	}
	return "", false
}

// calledOperations lists, as IAM actions, the SDK operations non-test code of
// the library calls, with one call site each.
func calledOperations(t *testing.T) map[string]string {
	t.Helper()
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
		Dir:  "..", // the core module
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]string{}
	var libs []string
	for _, p := range pkgs {
		for _, e := range p.Errors {
			t.Fatalf("%s: %v", p.PkgPath, e)
		}
		if !isLibrary(p.PkgPath) {
			continue
		}
		libs = append(libs, p.PkgPath)
		for _, f := range p.Syntax {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sig, ok := p.TypesInfo.TypeOf(call.Fun).(*types.Signature)
				if !ok {
					return true
				}
				if op, ok := sdkOperation(sig); ok {
					pos := p.Fset.Position(call.Pos())
					ops["dynamodb:"+op] = shortPos(pos)
				}
				return true
			})
		}
	}
	sort.Strings(libs)
	t.Logf("library packages scanned: %v", libs)
	for _, want := range []string{"/l2", "/invalidation", "/tiered"} {
		if !slices.Contains(libs, "github.com/tieredcache/tieredcache"+want) {
			t.Fatalf("package %s not scanned (found %v)", want, libs)
		}
	}
	return ops
}

func shortPos(p token.Position) string {
	if i := strings.Index(p.Filename, "/l2/"); i >= 0 {
		p.Filename = p.Filename[i+1:]
	} else if i := strings.LastIndex(p.Filename, "/"); i >= 0 {
		if j := strings.LastIndex(p.Filename[:i], "/"); j >= 0 {
			p.Filename = p.Filename[j+1:]
		}
	}
	return p.String()
}

// An action is in the policies if and only if some path of the library calls
// it: the set of operations the library's non-test code can call equals the
// union of the runtime and admin policies' actions.
func TestPolicyActionsAreExactlyWhatTheCodeCalls(t *testing.T) {
	called := calledOperations(t)
	rt, ad := loadPolicy(t, runtimePolicyFile), loadPolicy(t, adminPolicyFile)
	granted := map[string]bool{}
	for _, a := range append(rt.actions(), ad.actions()...) {
		granted[a] = true
	}
	for a, at := range called {
		if !granted[a] {
			t.Errorf("%s calls %s, which neither policy grants", at, a)
		}
	}
	for a := range granted {
		if _, ok := called[a]; !ok {
			t.Errorf("a policy grants %s, which no library code calls", a)
		}
	}
	var names []string
	for a, at := range called {
		names = append(names, a+" ("+at+")")
	}
	sort.Strings(names)
	t.Logf("operations the library calls: %s", strings.Join(names, ", "))
}
