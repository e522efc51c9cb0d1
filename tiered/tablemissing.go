package tiered

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// isTableMissing reports DynamoDB's answer for a table that does not exist
// (ResourceNotFoundException): an answer, not an outage, so the breaker
// counts it as one (isDefinite) and writes report it as *TableMissingError.
func isTableMissing(err error) bool {
	var rnf *types.ResourceNotFoundException
	return errors.As(err, &rnf)
}
