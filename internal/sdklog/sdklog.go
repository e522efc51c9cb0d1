// Package sdklog routes the AWS SDK's own log lines to a *slog.Logger, so that
// the clients tieredcache builds write nothing to stderr unless the user's
// logger does. The SDK's default logger (config.LoadDefaultConfig) writes
// to os.Stderr.
//
// One known warning is lowered to debug: aws-sdk-go-v2 issue #3545. On every
// ConditionalCheckFailed response (normal operation for a cache: a lost fill
// or lease race), the SDK closes the response body before the CRC32
// checksum of the body could be checked, and logs "failed to close HTTP
// response body, this may affect connection reuse: ... checksum ...". It
// means nothing for us; at warn level it floods operators' logs.
package sdklog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/smithy-go/logging"
)

// Slog returns a logging.Logger that writes through l: the SDK's Warn lines
// at warn, Debug lines at debug, and the #3545 warning at debug. A nil l
// gives a logger that drops everything.
func Slog(l *slog.Logger) logging.Logger {
	if l == nil {
		return logging.Nop{}
	}
	return slogLogger{l}
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	msg := fmt.Sprintf(format, v...)
	if c == logging.Warn && !KnownNoise(msg) {
		level = slog.LevelWarn
	}
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	s.l.Log(context.Background(), level, "aws-sdk: "+msg, "classification", string(c))
}

// Filter returns next without the #3545 warning: for a logging.Logger of
// the user's (aws.Config.Logger), which has no lower level to move it to.
// A nil next gives a logger that drops everything.
func Filter(next logging.Logger) logging.Logger {
	if next == nil {
		return logging.Nop{}
	}
	if _, ok := next.(logging.Nop); ok {
		return next
	}
	if _, ok := next.(slogLogger); ok {
		return next // already lowers it
	}
	return filtered{next}
}

type filtered struct{ next logging.Logger }

func (f filtered) Logf(c logging.Classification, format string, v ...any) {
	if c == logging.Warn && KnownNoise(fmt.Sprintf(format, v...)) {
		return
	}
	f.next.Logf(c, format, v...)
}

// KnownNoise reports whether an SDK log line is the #3545 warning: a failed
// close (or drain) of a response body, caused by its checksum.
func KnownNoise(msg string) bool {
	return (strings.HasPrefix(msg, "failed to close HTTP response body") ||
		strings.HasPrefix(msg, "failed to discard remaining HTTP response body")) &&
		strings.Contains(strings.ToLower(msg), "checksum")
}
