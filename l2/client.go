package l2

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tieredcache/tieredcache/internal/sdklog"
)

// Settings NewClient applies.
const (
	// ClientMaxAttempts: one retry. A cache has somewhere else to go (the
	// loader); the SDK's default of 3 attempts with backoff took 2.5 s to
	// fail one throttled GetItem here.
	ClientMaxAttempts = 2
	// ClientMaxBackoff caps the wait before the retry.
	ClientMaxBackoff = 50 * time.Millisecond
	// ClientDialTimeout bounds a TCP connect.
	ClientDialTimeout = 1 * time.Second
	// ClientResponseHeaderTimeout bounds the wait for a response once a
	// request is sent, per attempt: a backstop for calls without a deadline
	// of ours (table setup). Data-path calls are bounded by
	// Options.CallTimeout, which allows a large BatchGetItem page more than
	// a second before its first byte, hence a value as large as the default
	// hard bound (DefaultCallTimeout x HardTimeoutFactor).
	ClientResponseHeaderTimeout = DefaultCallTimeout * HardTimeoutFactor
	// ClientMaxIdleConnsPerHost keeps enough warm connections for a busy
	// node (the SDK default is 10, which makes concurrent misses dial).
	ClientMaxIdleConnsPerHost = 128
)

// NewClient builds a *dynamodb.Client from cfg with settings that suit a
// cache, applied before optFns (which may override them):
//
//   - retry.Standard with ClientMaxAttempts (2) attempts and backoff capped at
//     ClientMaxBackoff (50 ms);
//   - no client-side retry quota (ratelimit.None): the SDK's shared quota of
//     500 tokens runs out after some 17 failing calls in a row, and then
//     every call fails at once until it refills — a cache reads on, and its
//     circuit breaker, not the quota, decides when to stop calling;
//   - an HTTP client with short connect and response-header timeouts and a
//     larger idle connection pool (the Client* constants);
//   - cfg.Logger without the SDK's checksum warning on every
//     ConditionalCheckFailed response (aws-sdk-go-v2 issue #3545; see
//     internal/sdklog), which a cache gets in normal operation. Pass
//     WithLogger to send the SDK's lines to a *slog.Logger instead (the
//     SDK's default logger writes to stderr).
//
// Per-call deadlines are applied by Table (Options.CallTimeout), not here, so
// they hold for any client. Request-body logging is never enabled.
func NewClient(cfg aws.Config, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	fns := make([]func(*dynamodb.Options), 0, 1+len(optFns))
	fns = append(fns, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = ClientMaxAttempts
			so.MaxBackoff = ClientMaxBackoff
			so.RateLimiter = ratelimit.None
		})
		// A non-zero RetryMaxAttempts (from cfg or AWS_MAX_ATTEMPTS) would
		// wrap our retryer with another attempt count.
		o.RetryMaxAttempts = 0
		o.Logger = sdklog.Filter(o.Logger)
		o.HTTPClient = awshttp.NewBuildableClient().
			WithDialerOptions(func(d *net.Dialer) { d.Timeout = ClientDialTimeout }).
			WithTransportOptions(func(tr *http.Transport) {
				tr.ResponseHeaderTimeout = ClientResponseHeaderTimeout
				tr.MaxIdleConnsPerHost = ClientMaxIdleConnsPerHost
				tr.MaxIdleConns = 2 * ClientMaxIdleConnsPerHost
			})
	})
	fns = append(fns, optFns...)
	return dynamodb.NewFromConfig(cfg, fns...)
}

// WithLogger makes a client log through l (nil: nowhere) rather than the
// aws.Config's logger: the SDK's warnings at warn, the rest at debug, and
// the checksum warning of aws-sdk-go-v2 issue #3545 at debug. Use it as an
// option of NewClient (or dynamodb.NewFromConfig).
func WithLogger(l *slog.Logger) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) { o.Logger = sdklog.Slog(l) }
}
