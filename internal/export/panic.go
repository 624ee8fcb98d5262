package export

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic inside an export, recovered into the run's error:
// the run ends FAILED (code INTERNAL, the stack in the server log) instead
// of crashing the process and leaving every other run of it RUNNING until
// the rescue notices the dead heartbeat.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// catch runs fn and turns a panic in it into a *PanicError. Every goroutine
// of an export runs its body through catch: a panic on a goroutine other
// than the one that recovers cannot be caught anywhere else.
func catch(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}
