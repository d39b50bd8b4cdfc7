package cli

import (
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/jobrunner"
)

// exitCodeError ends the program with a code and no message: the command
// said what there was to say (a job's command exits with its own code).
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return "exit code " + strconv.Itoa(e.code) }

// jobCmd is what runs inside a job's pods: the init container installs
// the binary into the shared volume, and the job's container runs the
// wrapper from there.
func jobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "The job wrapper, run inside a job's pods", Hidden: true}
	install := &cobra.Command{Use: "install DST", Short: "Copy this binary to DST (mode 0755) for the job's container", Args: cobra.ExactArgs(1)}
	install.RunE = func(_ *cobra.Command, args []string) error { return jobrunner.Install(args[0]) }
	run := &cobra.Command{Use: "run", Short: "Fetch the job's code and inputs, run its command, ship its logs and outputs", Args: cobra.NoArgs}
	run.RunE = func(cmd *cobra.Command, _ []string) error {
		if code := jobrunner.Run(cmd.Context(), os.Getenv, os.Stdout, os.Stderr); code != 0 {
			return &exitCodeError{code}
		}
		return nil
	}
	cmd.AddCommand(install, run)
	return cmd
}
