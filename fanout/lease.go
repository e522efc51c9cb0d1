package fanout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DefaultLeaseKey is the partition key of the lease item. It has no '#', so
// no cache decodes it as one of its keys (l2's keys are namespace#key).
const DefaultLeaseKey = "fanout!leader"

// LeaseAPI is the part of *dynamodb.Client the lease uses.
type LeaseAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// leaseState is the lease item: who holds it, its epoch (grows on every
// takeover), and rev (grows on every write, renewals included).
type leaseState struct {
	exists bool
	holder string
	epoch  uint64
	rev    uint64
}

// lease reads and writes the lease item. Expiry is never read from a clock
// stored in the item: a candidate judges it on its own monotonic clock, from
// how long it has seen the same rev (see Bridge).
type lease struct {
	api   LeaseAPI
	table string
	key   string
	id    string
}

var errLeaseLost = errors.New("fanout: lease taken by another candidate")

func (l *lease) pk() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: l.key}}
}

func (l *lease) read(ctx context.Context) (leaseState, error) {
	out, err := l.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &l.table, Key: l.pk(), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return leaseState{}, err
	}
	if out.Item == nil {
		return leaseState{}, nil
	}
	s := leaseState{exists: true}
	if h, ok := out.Item["holder"].(*types.AttributeValueMemberS); ok {
		s.holder = h.Value
	}
	s.epoch = num(out.Item["epoch"])
	s.rev = num(out.Item["rev"])
	return s, nil
}

func num(av types.AttributeValue) uint64 {
	if n, ok := av.(*types.AttributeValueMemberN); ok {
		v, _ := strconv.ParseUint(n.Value, 10, 64)
		return v
	}
	return 0
}

func n64(v uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(v, 10)}
}

// nextEpoch is the epoch a take writes over seen: max(seen+1, the wall
// clock's Unix milliseconds). Epochs grow by one within a lease item's life;
// the clock is there for an item deleted (by an operator, a table restore):
// the next take then starts from the clock instead of 1, so its epoch is
// above every earlier one, and pods, which ignore an older epoch, follow it.
// That holds as long as the wall clocks of the candidates differ by less
// than the time between the earlier epoch's take and the restart (and no
// item was written more than once per millisecond for long).
func nextEpoch(seen uint64, now time.Time) uint64 {
	return max(seen+1, uint64(max(now.UnixMilli(), 0)))
}

// take writes the lease for this candidate with epoch nextEpoch(seen.epoch),
// on the condition that the item is still as seen (absent, or the same epoch
// and rev). ok is false when another candidate wrote it first. epoch is the
// one written, or attempted on an error (the write may have landed).
func (l *lease) take(ctx context.Context, seen leaseState) (epoch uint64, ok bool, err error) {
	epoch = nextEpoch(seen.epoch, time.Now())
	item := l.pk()
	item["holder"] = &types.AttributeValueMemberS{Value: l.id}
	item["epoch"] = n64(epoch)
	item["rev"] = n64(seen.rev + 1)
	in := &dynamodb.PutItemInput{TableName: &l.table, Item: item}
	if !seen.exists {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		in.ConditionExpression = aws.String("epoch = :e AND rev = :r")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":e": n64(seen.epoch), ":r": n64(seen.rev)}
	}
	_, err = l.api.PutItem(ctx, in)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return epoch, false, nil
	}
	if err != nil {
		return epoch, false, err
	}
	return epoch, true, nil
}

// renew bumps rev if this candidate still holds epoch; errLeaseLost if not.
func (l *lease) renew(ctx context.Context, epoch uint64) error {
	_, err := l.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           &l.table,
		Key:                 l.pk(),
		ConditionExpression: aws.String("holder = :me AND epoch = :e"),
		UpdateExpression:    aws.String("SET rev = rev + :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": &types.AttributeValueMemberS{Value: l.id}, ":e": n64(epoch), ":one": n64(1),
		},
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return errLeaseLost
	}
	if err != nil {
		return fmt.Errorf("fanout: renew lease: %w", err)
	}
	return nil
}

// observer tells when a lease held by another candidate has expired: when
// the same (epoch, rev) has been seen for TTL, measured on this process's
// monotonic clock from the end of the read that first returned it. That
// read ended after the holder's write of that rev began, and the holder stops
// reading TTL minus a margin after that beginning, on its own clock.
type observer struct {
	seen       leaseState
	since      time.Time // first read that returned seen's (epoch, rev)
	epochSince time.Time // first read that returned seen's epoch
	primed     bool
}

func (o *observer) expired(s leaseState, readEnd time.Time, ttl time.Duration) bool {
	if !o.primed || s.epoch != o.seen.epoch || s.exists != o.seen.exists {
		o.epochSince = readEnd
	}
	if !o.primed || s.epoch != o.seen.epoch || s.rev != o.seen.rev || s.exists != o.seen.exists {
		o.seen, o.since, o.primed = s, readEnd, true
		return !s.exists
	}
	return readEnd.Sub(o.since) >= ttl
}

// epochStable tells whether the epoch last passed to expired has been seen
// for ttl: the holder of the epoch before it (if any) stopped reading at
// least ttl before.
func (o *observer) epochStable(readEnd time.Time, ttl time.Duration) bool {
	return o.primed && o.seen.exists && readEnd.Sub(o.epochSince) >= ttl
}
