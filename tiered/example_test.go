package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// The examples run against the test suite's DynamoDB Local. In a service,
// the configuration comes from config.LoadDefaultConfig (or Options.AWS is
// left nil, which does the same) and the table is one shared by every
// process.

var exampleSeq atomic.Int64

// exampleAWS returns the SDK configuration of the suite's DynamoDB Local.
func exampleAWS() *aws.Config {
	s, err := dynamolocal.Shared()
	if err != nil {
		log.Fatalf("DynamoDB Local: %v", err)
	}
	cfg := dynamolocal.AWSConfig(s.Endpoint())
	return &cfg
}

// exampleTable is a fresh table name for one example.
func exampleTable(name string) string {
	return fmt.Sprintf("example_%s_%d", name, exampleSeq.Add(1))
}

type User struct {
	Name string `json:"name"`
}

func ExampleNew() {
	ctx := context.Background()
	cache, err := tiered.New(ctx, tiered.Options[User]{
		Table:       exampleTable("users"), // shared by every process
		CreateTable: true,                  // else New checks the existing table
		AWS:         exampleAWS(),          // nil: config.LoadDefaultConfig
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	fmt.Println("cache ready")
	// Output: cache ready
}

func ExampleCache_GetOrLoad() {
	ctx := context.Background()
	cache, err := tiered.New(ctx, tiered.Options[User]{Table: exampleTable("users"), CreateTable: true, AWS: exampleAWS()})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	loads := 0
	loadUser := func(ctx context.Context, key string) (User, error) {
		loads++ // your database query goes here
		if key != "user:42" {
			return User{}, tiered.ErrNotFound // cached for NegativeTTL
		}
		return User{Name: "Ada"}, nil
	}
	for range 3 {
		u, err := cache.GetOrLoad(ctx, "user:42", loadUser)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(u.Name)
	}
	_, err = cache.GetOrLoad(ctx, "user:7", loadUser)
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	fmt.Println("loader calls:", loads)
	// Output:
	// Ada
	// Ada
	// Ada
	// true
	// loader calls: 2
}

func ExampleCache_GetMany() {
	ctx := context.Background()
	cache, err := tiered.New(ctx, tiered.Options[string]{Table: exampleTable("names"), CreateTable: true, AWS: exampleAWS()})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	if err := cache.Set(ctx, "a", "Ada"); err != nil {
		log.Fatal(err)
	}
	// One call for the keys no tier has ("b" and "c"); a key the source
	// does not know ("c") is simply absent.
	loadNames := func(ctx context.Context, keys []string) (map[string]string, error) {
		fmt.Println("batch loader called with", slices.Sorted(slices.Values(keys)))
		source := map[string]string{"b": "Barbara"}
		found := map[string]string{}
		for _, k := range keys {
			if v, ok := source[k]; ok {
				found[k] = v
			}
		}
		return found, nil
	}
	got, err := cache.GetMany(ctx, []string{"a", "b", "c"}, loadNames)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		fmt.Println(k, got[k])
	}
	// Output:
	// batch loader called with [b c]
	// a Ada
	// b Barbara
}

func ExampleCache_Set() {
	ctx := context.Background()
	cache, err := tiered.New(ctx, tiered.Options[string]{Table: exampleTable("names"), CreateTable: true, AWS: exampleAWS()})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	// A write goes to DynamoDB; every other process drops its L1 copy when
	// the table's stream tells it. This one reads its own write at once.
	if err := cache.Set(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err) // errors.Is(err, tiered.ErrL2Unavailable): retried in the background
	}
	v, err := cache.Get(ctx, "greeting")
	fmt.Println(v, err)

	if err := cache.Delete(ctx, "greeting"); err != nil {
		log.Fatal(err)
	}
	_, err = cache.Get(ctx, "greeting")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// hello <nil>
	// true
}

func ExampleCache_Stats() {
	ctx := context.Background()
	cache, err := tiered.New(ctx, tiered.Options[string]{
		Table: exampleTable("names"), CreateTable: true, AWS: exampleAWS(),
		DisableInvalidation: true, // one process: no stream consumer (Stats().Stream.Enabled is false)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	load := func(context.Context, string) (string, error) { return "v", nil }
	for range 3 {
		if _, err := cache.GetOrLoad(ctx, "k", load); err != nil {
			log.Fatal(err)
		}
	}
	st := cache.Stats()
	fmt.Println("L1 hits:", st.L1.Hits, "misses:", st.L1.Misses)
	fmt.Println("L2 misses:", st.L2.Misses, "loader calls:", st.Loads.Calls)
	fmt.Println("breaker:", st.Breaker.State, "stream:", st.Stream.Enabled)
	// Output:
	// L1 hits: 2 misses: 1
	// L2 misses: 1 loader calls: 1
	// breaker: closed stream: false
}
