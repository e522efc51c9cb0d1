package l2_test

import (
	"testing"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

// TestMain stops the shared DynamoDB Local and checks for leaked goroutines.
func TestMain(m *testing.M) { dynamolocal.Main(m) }
