// Package ddbfault injects DynamoDB failures into an aws-sdk-go-v2 client for
// tests: throttling errors, any error a given number of times, latency, and
// BatchGetItem answers with UnprocessedKeys. It is a smithy middleware
// installed through dynamodb.Options.APIOptions, so the code under test runs
// unchanged against a real endpoint (DynamoDB Local) with the faults on top.
//
//	inj := ddbfault.New()
//	client := dynamodb.NewFromConfig(cfg, inj.Options)
//	inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true, Times: 2})
//
// Errors and latency apply per attempt (after the SDK's retry middleware, so
// the client's retryer sees and retries them, as it would a real throttle);
// UnprocessedKeys apply per call (the whole operation). An Injector is safe
// for concurrent use, and rules can change while calls run.
package ddbfault

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// Rule is one scripted fault.
type Rule struct {
	// Op is the operation name ("GetItem", "BatchGetItem", "UpdateItem", ...);
	// empty matches every operation.
	Op string
	// Err is returned from the attempt instead of sending it.
	Err error
	// Throttle returns a *types.ProvisionedThroughputExceededException (the
	// SDK retries it as a throttle) when Err is nil.
	Throttle bool
	// Latency is added before the attempt is sent (less if the attempt's
	// context ends first, which then fails with the context's error).
	Latency time.Duration
	// Unprocessed (BatchGetItem only) withholds up to this many keys of
	// each table per call, the last ones of the request: they are not sent,
	// and come back in UnprocessedKeys as DynamoDB returns them when it cannot
	// read everything. Negative: every key.
	Unprocessed int
	// Times is how many attempts (Err, Throttle, Latency) or calls
	// (Unprocessed) the rule affects before it retires; 0: until removed.
	Times int
}

func (r *Rule) attemptFault() bool { return r.Err != nil || r.Throttle || r.Latency > 0 }

type rule struct {
	Rule
	used int
}

// Injector holds the rules and counts what passes through.
type Injector struct {
	mu       sync.Mutex
	rules    []*rule
	attempts map[string]int
	calls    map[string]int
	injected int
}

// New returns an Injector with no rules: calls pass through untouched.
func New() *Injector {
	return &Injector{attempts: map[string]int{}, calls: map[string]int{}}
}

// Add appends r; rules are tried in the order added, the first live rule
// that matches applies. It returns a function that removes r.
func (in *Injector) Add(r Rule) (remove func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	rr := &rule{Rule: r}
	in.rules = append(in.rules, rr)
	return func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		for i, x := range in.rules {
			if x == rr {
				in.rules = append(in.rules[:i:i], in.rules[i+1:]...)
				return
			}
		}
	}
}

// Reset removes every rule (counters are kept).
func (in *Injector) Reset() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rules = nil
}

// Attempts returns how many attempts of op (every op when empty) the client
// made, faulted ones included.
func (in *Injector) Attempts(op string) int { return in.count(in.attempts, op) }

// Calls returns how many operations op (every op when empty) were called.
func (in *Injector) Calls(op string) int { return in.count(in.calls, op) }

func (in *Injector) count(m map[string]int, op string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if op != "" {
		return m[op]
	}
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// Injected returns how many faults were applied.
func (in *Injector) Injected() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.injected
}

// Options installs the injector on a client: pass it to dynamodb.New or
// NewFromConfig (or l2.NewClient) as an option function.
func (in *Injector) Options(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, in.Install)
}

// Install adds the injector's middlewares to one operation's stack; it is a
// dynamodb.Options.APIOptions entry.
func (in *Injector) Install(stack *middleware.Stack) error {
	op := stack.ID()
	call := middleware.InitializeMiddlewareFunc("ddbfault.Call", func(ctx context.Context, inp middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		return in.handleCall(ctx, op, inp, next)
	})
	if err := stack.Initialize.Add(call, middleware.After); err != nil {
		return err
	}
	attempt := middleware.FinalizeMiddlewareFunc("ddbfault.Attempt", func(ctx context.Context, inp middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		if err := in.handleAttempt(ctx, op); err != nil {
			return middleware.FinalizeOutput{}, middleware.Metadata{}, err
		}
		return next.HandleFinalize(ctx, inp)
	})
	if _, ok := stack.Finalize.Get("Retry"); ok {
		return stack.Finalize.Insert(attempt, "Retry", middleware.After)
	}
	return stack.Finalize.Add(attempt, middleware.After)
}

// pick returns the first live rule for op that ok accepts, using it up once.
func (in *Injector) pick(op string, ok func(*Rule) bool) (Rule, bool) {
	for _, r := range in.rules {
		if (r.Op == "" || r.Op == op) && ok(&r.Rule) && (r.Times == 0 || r.used < r.Times) {
			r.used++
			in.injected++
			return r.Rule, true
		}
	}
	return Rule{}, false
}

func (in *Injector) handleAttempt(ctx context.Context, op string) error {
	in.mu.Lock()
	in.attempts[op]++
	r, ok := in.pick(op, (*Rule).attemptFault)
	in.mu.Unlock()
	if !ok {
		return nil
	}
	if r.Latency > 0 {
		t := time.NewTimer(r.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	switch {
	case r.Err != nil:
		return r.Err
	case r.Throttle:
		return ThrottleError()
	}
	return nil
}

// ThrottleError returns the error a Throttle rule injects.
func ThrottleError() error {
	return &types.ProvisionedThroughputExceededException{Message: aws.String("throttled by ddbfault")}
}

func (in *Injector) handleCall(ctx context.Context, op string, inp middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	in.mu.Lock()
	in.calls[op]++
	var r Rule
	ok := false
	if op == "BatchGetItem" {
		r, ok = in.pick(op, func(r *Rule) bool { return r.Unprocessed != 0 })
	}
	in.mu.Unlock()
	params, isBatch := inp.Parameters.(*dynamodb.BatchGetItemInput)
	if !ok || !isBatch {
		return next.HandleInitialize(ctx, inp)
	}
	send, withheld := split(params, r.Unprocessed)
	var out middleware.InitializeOutput
	var md middleware.Metadata
	res := &dynamodb.BatchGetItemOutput{}
	if len(send.RequestItems) > 0 {
		cp := inp
		cp.Parameters = send
		var err error
		out, md, err = next.HandleInitialize(ctx, cp)
		if err != nil {
			return out, md, err
		}
		if got, ok := out.Result.(*dynamodb.BatchGetItemOutput); ok && got != nil {
			res = got
		}
	}
	if res.UnprocessedKeys == nil {
		res.UnprocessedKeys = map[string]types.KeysAndAttributes{}
	}
	for table, ka := range withheld {
		u := res.UnprocessedKeys[table]
		if u.Keys == nil {
			u = ka
			u.Keys = nil
		}
		u.Keys = append(u.Keys, ka.Keys...)
		res.UnprocessedKeys[table] = u
	}
	out.Result = res
	return out, md, nil
}

// split divides a BatchGetItem request into what is sent and what is
// withheld (up to n keys of each table, the last ones; all if n < 0).
func split(p *dynamodb.BatchGetItemInput, n int) (send *dynamodb.BatchGetItemInput, withheld map[string]types.KeysAndAttributes) {
	cp := *p
	cp.RequestItems = make(map[string]types.KeysAndAttributes, len(p.RequestItems))
	withheld = map[string]types.KeysAndAttributes{}
	for table, ka := range p.RequestItems {
		k := n
		if k < 0 || k > len(ka.Keys) {
			k = len(ka.Keys)
		}
		keep := len(ka.Keys) - k
		if keep > 0 {
			s := ka
			s.Keys = ka.Keys[:keep:keep]
			cp.RequestItems[table] = s
		}
		if k > 0 {
			w := ka
			w.Keys = append([]map[string]types.AttributeValue(nil), ka.Keys[keep:]...)
			withheld[table] = w
		}
	}
	return &cp, withheld
}
