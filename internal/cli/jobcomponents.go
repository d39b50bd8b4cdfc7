package cli

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/jobrunner"
	"outpost.dev/outpost/internal/remoteexec"
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
	// rsh is mpirun's rsh agent in an MPI job (plm_rsh_agent), in place of
	// ssh: its arguments are ssh's, so cobra leaves them alone.
	rsh := &cobra.Command{Use: "rsh [OPTIONS] HOST COMMAND...", Short: "Run a command on another instance of an MPI job (mpirun's rsh agent)",
		DisableFlagParsing: true, Hidden: true}
	rsh.RunE = func(cmd *cobra.Command, args []string) error {
		signals := make(chan os.Signal, 8)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(signals)
		if code := remoteexec.RSH(cmd.Context(), args, os.Getenv, os.Stdin, os.Stdout, os.Stderr, signals); code != 0 {
			return &exitCodeError{code}
		}
		return nil
	}
	cmd.AddCommand(install, run, rsh)
	return cmd
}
