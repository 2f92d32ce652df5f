package main

import (
	"errors"
	"strconv"
)

// exitError carries a specific process exit status (for example the status
// of a command run inside a guest) through cobra's error return. A nil err
// means "exit silently with code".
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "exit status " + strconv.Itoa(e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode maps an error returned by a subcommand to the process status.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
