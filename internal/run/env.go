package run

import (
	"errors"
	"fmt"

	"github.com/prox-ops/drover/internal/secrets"
)

// Env is what a run reads from its process and tells it besides its
// progress: the environment, the masker, warnings.
type Env struct {
	// Getenv reads the environment (secrets come only from there).
	Getenv func(string) string
	// Masker masks secret values in everything the run writes.
	Masker *secrets.Masker
	// Warn tells people something went wrong that does not stop the run.
	Warn func(msg string)
	// LearnSecrets adds the values of more secret variables (the ones
	// drover.yaml names) to the masker, and registers them with GitHub.
	LearnSecrets func(names []string)
}

func (e Env) getenv(k string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(k)
}

func (e Env) warn(format string, args ...any) {
	if e.Warn != nil {
		e.Warn(fmt.Sprintf(format, args...))
	}
}

func (e Env) mask(s string) string {
	if e.Masker == nil {
		return s
	}
	return e.Masker.Mask(s)
}

func (e Env) masker(names []string) *secrets.Masker {
	if e.Masker == nil {
		return secrets.FromEnv(e.getenv, names)
	}
	e.learn(names)
	return e.Masker
}

func (e Env) learn(names []string) {
	if e.LearnSecrets != nil {
		e.LearnSecrets(names)
	}
}

// UsageError is bad input: nothing was touched. The CLI exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as bad input.
func Usage(err error) error { return &UsageError{Err: err} }

// IsUsage says whether err is bad input.
func IsUsage(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue)
}
