package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMPI runs the mpi4py example: mpirun on instance 0 starts the ranks
// of both instances through Outpost's remote-exec agent.
func TestMPI(t *testing.T) {
	f := setup(t)
	run := func(name string, test func(t *testing.T)) { f.subtest(t, name, test) }
	example := filepath.Join(f.root, "examples/jobs/mpi-allreduce/job.yml")

	run("mpi allreduce example on two instances", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", example, "--stream")
		for _, want := range []string{"[rank 0] rank 0 of 2", "[rank 1] rank 1 of 2", "[rank 0] allreduce sum: 3 (expected 3)", "Execution Summary"} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
		name := strings.TrimSpace(strings.TrimPrefix(strings.Split(out, "\n")[0], "RunId: "))
		dir := t.TempDir()
		f.mustML("job", "download", "-n", name, "--all", "--download-path", dir)
		for rank, want := range []string{"allreduce sum: 3 (expected 3)", "rank 1 of 2"} {
			p := filepath.Join(dir, "artifacts", "user_logs", "std_log_process_"+string(rune('0'+rank))+".txt")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("rank %d's log: %v", rank, err)
			}
			if !strings.Contains(string(b), want) || strings.Contains(string(b), "<stdout>:") {
				t.Fatalf("rank %d's log has no %q or still has Open MPI's tags:\n%s", rank, want, b)
			}
		}
	})

	run("mpi allreduce example with two processes per instance", func(t *testing.T) {
		out := f.mustML("job", "create", "-f", example, "--set", "distribution.process_count_per_instance=2", "--stream")
		for _, want := range []string{"[rank 3] rank 3 of 4", "[rank 0] allreduce sum: 10 (expected 10)"} {
			if !strings.Contains(out, want) {
				t.Fatalf("stream printed no %q:\n%s", want, out)
			}
		}
	})
}
