package l2

import "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

// CheckDescription lists how desc differs from the table a Table with
// Options.StreamView = view accepts: the check CheckTable and EnsureTable run
// on DescribeTable's answer (key schema exactly pk S HASH, a stream whose view
// covers view, status ACTIVE or UPDATING). TTL is not part of a
// TableDescription and is checked separately (DescribeTimeToLive). An empty
// view means DefaultStreamView. Nil desc is one problem. For infrastructure
// code (templates) that wants to know before deploying whether New will
// accept its table.
func CheckDescription(desc *types.TableDescription, view types.StreamViewType) []string {
	if desc == nil {
		return []string{"no table description"}
	}
	if view == "" {
		view = DefaultStreamView
	}
	return (&Table{o: Options{StreamView: view}}).checkTable(desc)
}
