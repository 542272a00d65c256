package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// cancelSignals are the signals that cancel a conversion, a verify or a
// build: Ctrl-C, and what timeout(1), Slurm (scancel, time limits,
// preemption), Kubernetes pod deletion and docker stop send (SIGTERM),
// and a closed terminal or SSH session (SIGHUP).
var cancelSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// interrupted is the cause of a context canceled by a signal: its message
// names the signal, and it matches context.Canceled.
type interrupted struct{ sig os.Signal }

func (e interrupted) Error() string {
	name := e.sig.String()
	if s, ok := e.sig.(syscall.Signal); ok {
		switch s {
		case syscall.SIGINT:
			name = "SIGINT"
		case syscall.SIGTERM:
			name = "SIGTERM"
		case syscall.SIGHUP:
			name = "SIGHUP"
		}
	}
	return fmt.Sprintf("interrupted by %s; the temporary files were removed", name)
}

func (e interrupted) Is(target error) bool { return target == context.Canceled }

// signalContext returns a context canceled, with an interrupted cause,
// by the first of cancelSignals; the operation then stops at its next
// step, removes its temporary files and returns the cause as its error,
// and the command exits with status 1. Later signals are ignored while
// the cleanup runs (SIGKILL cannot be: a rerun removes what it leaves).
// stop releases the signals.
func signalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, cancelSignals...)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(interrupted{sig})
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
		signal.Stop(ch)
	}
}

// notice returns an exec.Options.Notice callback printing msg on stderr
// as a note of command cmd.
func (e *env) notice(cmd string) func(msg string) {
	return func(msg string) { fmt.Fprintf(e.stderr, "rolltplc %s: %s\n", cmd, msg) }
}
