package l1

import (
	"errors"
	"fmt"
)

// ErrInvalidOptions is returned by New when Options are out of range. The
// concrete error is an *OptionsError naming the field.
var ErrInvalidOptions = errors.New("l1: invalid options")

// OptionsError reports one bad field of Options. errors.Is(err,
// ErrInvalidOptions) is true for it.
type OptionsError struct {
	Field  string // the Options field, e.g. "Jitter"
	Reason string // what is wrong with it, e.g. "must be < 1"
}

func (e *OptionsError) Error() string {
	return fmt.Sprintf("l1: invalid options: %s %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidOptions) hold.
func (e *OptionsError) Is(target error) bool { return target == ErrInvalidOptions }
