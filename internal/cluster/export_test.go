package cluster

import (
	"context"
	"io"
	"os/exec"
	"time"
)

// RunSupervisor runs the supervisor loop over a command of the test's own,
// reporting each record it writes; it returns when ctx ends.
func RunSupervisor(ctx context.Context, command func() *exec.Cmd, log io.Writer, minDelay, maxDelay, grace time.Duration, onRecord func(pid, restarts int, lastExit string)) error {
	s := &supervisor{name: "test-component", command: command, log: log, grace: grace,
		minDelay: minDelay, maxDelay: maxDelay, stable: time.Minute,
		record: func(r record) error {
			pid := 0
			if r.Process != nil {
				pid = r.Process.PID
			}
			onRecord(pid, r.Restarts, r.LastExit)
			return nil
		}}
	return s.run(ctx)
}
