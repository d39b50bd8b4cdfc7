package jobrunner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	v1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
)

func TestMain(m *testing.M) {
	retryWindow = 10 * time.Second
	backoffFirst = 5 * time.Millisecond
	backoffMax = 50 * time.Millisecond
	shipInterval = 20 * time.Millisecond
	partialDelay = 20 * time.Millisecond
	killGrace = 2 * time.Second
	drainTimeout = 500 * time.Millisecond
	flushOnCancel = 5 * time.Second
	os.Exit(m.Run())
}

const ds = "workspaceblobstore"

func uri(p string) string { return "azureml://datastores/" + ds + "/paths/" + p }

// waitFor waits up to 20 s for cond to hold.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	clustertest.Eventually(t, 20*time.Second, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// jobResult is how a run of the wrapper ended.
type jobResult struct {
	code           int
	stdout, stderr string
	root           string
	term           string // the termination message; "" when none was written
	termWritten    bool
}

type runOptions struct {
	env    map[string]string // added to, or replacing, the wrapper's settings
	ctx    context.Context
	stdout *clustertest.Log
}

// runJob runs the wrapper against w with a fresh ROOT. Its environment
// holds the job's credentials too, as a pod's does.
func runJob(t *testing.T, w *fakeWorkspace, o runOptions) jobResult {
	t.Helper()
	root := t.TempDir()
	// Read-only inputs would stop the temporary folder's removal.
	t.Cleanup(func() {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	term := filepath.Join(t.TempDir(), "termination-log")
	settings := map[string]string{
		v1.EnvJobURL:      w.base,
		v1.EnvJobToken:    w.token,
		v1.EnvJobCA:       w.caPEM,
		EnvRoot:           root,
		EnvInstanceIndex:  "0",
		EnvInstanceCount:  "1",
		EnvTerminationLog: term,
		"PATH":            os.Getenv("PATH"),
	}
	for k, v := range o.env {
		settings[k] = v
	}
	environ := func() []string {
		env := os.Environ()
		for _, k := range []string{v1.EnvJobURL, v1.EnvJobToken, v1.EnvJobCA} {
			env = append(env, k+"="+settings[k])
		}
		return append(env, v1.EnvProxy+"=", v1.EnvNoProxy+"=")
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	stdout := o.stdout
	if stdout == nil {
		stdout = &clustertest.Log{}
	}
	var stderr clustertest.Log
	code := run(ctx, func(k string) string { return settings[k] }, environ, stdout, &stderr)
	res := jobResult{code: code, stdout: stdout.String(), stderr: stderr.String(), root: root}
	if b, err := os.ReadFile(term); err == nil {
		res.term, res.termWritten = string(b), true
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, s := range []string{res.stdout, res.stderr, res.term} {
		if strings.Contains(s, w.token) {
			t.Errorf("the token appears in the wrapper's output:\n%s", s)
		}
	}
	return res
}

// checkAppends verifies that every accepted append of file started where
// the one before ended.
func checkAppends(t *testing.T, w *fakeWorkspace, file string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var at int64
	n := 0
	for _, a := range w.appends {
		if a.file != file || a.status/100 != 2 {
			continue
		}
		if a.offset != at {
			t.Errorf("append %d of %s at offset %d, want %d", n, file, a.offset, at)
		}
		at += int64(a.size)
		n++
	}
	if n == 0 {
		t.Errorf("no append of %s", file)
	}
}

func str(s string) *string { return &s }

const trainScript = `set -e
echo "cwd=$(pwd -P)"
echo "args=$*"
. lib/util.sh
echo "data=$(cat "$1/a.txt") $(cat "$1/sub/b.txt")"
echo "mode=$(stat -c %a "$1/a.txt") $(stat -c %a "$1/sub") $(stat -c %a "$2")"
echo "cfg=$(cat "$2")"
echo "to stderr" >&2
env > outputs/env.txt
mkdir -p "$4/ckpt" && echo weights > "$4/ckpt/w.bin"
echo 0.93 > "$5"
echo report > outputs/report.txt
for i in $(seq 1 50); do echo "line $i"; done
`

func fullJob() api.JobRun {
	return api.JobRun{
		Name: "job_1", ResourceGroup: "rg1", Workspace: "ws1", ExperimentName: "exp1",
		Command: "bash train.sh ${{inputs.data}} ${{inputs.cfg}} ${{inputs.lr}} ${{outputs.model}} ${{outputs.score}}",
		Code:    uri("LocalUpload/abc/src"),
		Inputs: map[string]api.RunInput{
			"data": {Type: "uri_folder", URI: uri("datasets/d1"), Mode: "ro_mount"},
			"cfg":  {Type: "uri_file", URI: uri("datasets/cfg.json"), Mode: "download"},
			"lr":   {Literal: str("0.01")},
		},
		Outputs: map[string]api.RunOutput{
			"model": {Type: "uri_folder", URI: uri("azureml/job_1/model/"), Mode: "rw_mount"},
			"score": {Type: "uri_file", URI: uri("azureml/job_1/score/score.txt"), Mode: "upload"},
		},
		EnvironmentVariables: map[string]string{"FOO": "bar baz"},
		Artifacts:            uri("ExperimentRun/dcid.job_1/outputs/"),
	}
}

func putJobFiles(w *fakeWorkspace) {
	w.put(ds, "LocalUpload/abc/src/train.sh", trainScript, 0o644)
	w.put(ds, "LocalUpload/abc/src/lib/util.sh", "echo util loaded\n", 0o644)
	w.put(ds, "datasets/d1/a.txt", "A", 0o644)
	w.put(ds, "datasets/d1/sub/b.txt", "B", 0o644)
	w.put(ds, "datasets/cfg.json", `{"k": 1}`, 0o644)
	w.put(ds, "datasets/other.txt", "not an input", 0o644)
}

func TestRunFullJob(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, fullJob())
	putJobFiles(w)
	w.specFailures = 2 // the workspace restarts as the pod starts
	res := runJob(t, w, runOptions{})
	if res.code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s\nstdout:\n%s", res.code, res.stderr, res.stdout)
	}
	root := res.root
	wd, err := filepath.EvalSymlinks(filepath.Join(root, "wd"))
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	fmt.Fprintf(&want, "cwd=%s\n", wd)
	fmt.Fprintf(&want, "args=%s %s 0.01 %s %s\n", filepath.Join(root, "inputs/data"), filepath.Join(root, "inputs/cfg/cfg.json"),
		filepath.Join(root, "outputs/model"), filepath.Join(root, "outputs/score/score.txt"))
	want.WriteString("util loaded\ndata=A B\nmode=444 555 644\ncfg={\"k\": 1}\nto stderr\n")
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}

	const logFile = "user_logs/std_log.txt"
	if got := w.log(logFile); got != want.String() {
		t.Errorf("workspace log:\n%s\nwant:\n%s", got, want.String())
	}
	checkAppends(t, w, logFile)
	if res.stdout != want.String() {
		t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, want.String())
	}
	if local, err := os.ReadFile(filepath.Join(root, "logs", logFile)); err != nil || string(local) != want.String() {
		t.Errorf("local copy of the log: %q, %v", local, err)
	}

	if got, want := w.phaseNames(), []string{"Preparing", "Running", "Finalizing"}; !slices.Equal(got, want) {
		t.Errorf("phases %v, want %v", got, want)
	}
	for path, want := range map[string]string{
		"azureml/job_1/model/ckpt/w.bin":              "weights\n",
		"azureml/job_1/score/score.txt":               "0.93\n",
		"ExperimentRun/dcid.job_1/outputs/report.txt": "report\n",
	} {
		if got, ok := w.get(ds, path); !ok || got != want {
			t.Errorf("datastore %s = %q (present %v), want %q", path, got, ok, want)
		}
	}
	if _, ok := w.get(ds, "ExperimentRun/dcid.job_1/outputs/env.txt"); !ok {
		t.Errorf("./outputs/env.txt was not uploaded")
	}
	if res.termWritten {
		t.Errorf("termination message %q after success", res.term)
	}

	env, err := os.ReadFile(filepath.Join(root, "wd/outputs/env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), w.token) {
		t.Errorf("the token is in the command's environment")
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	for _, k := range []string{v1.EnvJobToken, v1.EnvJobURL, v1.EnvJobCA, v1.EnvProxy, v1.EnvNoProxy} {
		if _, ok := vars[k]; ok {
			t.Errorf("%s is in the command's environment", k)
		}
	}
	for k, v := range map[string]string{
		"FOO":                        "bar baz",
		"AZUREML_RUN_ID":             "job_1",
		"AZUREML_ARM_RESOURCEGROUP":  "rg1",
		"AZUREML_ARM_WORKSPACE_NAME": "ws1",
		"AZUREML_EXPERIMENT_NAME":    "exp1",
		"AZURE_ML_INPUT_lr":          "0.01",
		"AZURE_ML_INPUT_data":        filepath.Join(root, "inputs/data"),
		"AZURE_ML_INPUT_cfg":         filepath.Join(root, "inputs/cfg/cfg.json"),
		"AZURE_ML_OUTPUT_model":      filepath.Join(root, "outputs/model"),
		"AZURE_ML_OUTPUT_score":      filepath.Join(root, "outputs/score/score.txt"),
		"AZUREML_PROCESS_NAME":       "rank_0",
	} {
		if vars[k] != v {
			t.Errorf("%s=%q in the command's environment, want %q", k, vars[k], v)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "inputs/data/../other.txt")); err == nil {
		t.Errorf("a file beside the input folder was downloaded")
	}
}

func TestRunFailureMessage(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = `echo first; for i in $(seq 1 30); do echo "l$i"; done; echo oops >&2; exit 3`
	w := newFakeWorkspace(t, run)
	res := runJob(t, w, runOptions{})
	if res.code != 3 {
		t.Fatalf("exit code %d, want 3; stderr:\n%s", res.code, res.stderr)
	}
	var lines []string
	for i := 12; i <= 30; i++ {
		lines = append(lines, fmt.Sprintf("l%d", i))
	}
	want := "exit code 3: " + strings.Join(append(lines, "oops"), "\n")
	if res.term != want {
		t.Errorf("termination message:\n%s\nwant:\n%s", res.term, want)
	}
	if !strings.HasPrefix(w.log("user_logs/std_log.txt"), "first\nl1\n") || !strings.HasSuffix(w.log("user_logs/std_log.txt"), "l30\noops\n") {
		t.Errorf("log: %q", w.log("user_logs/std_log.txt"))
	}
	// A failed job's outputs are kept, as a mounted folder would have them.
	if got := w.phaseNames(); !slices.Equal(got, []string{"Preparing", "Running", "Finalizing"}) {
		t.Errorf("phases %v", got)
	}
}

func TestRunCommandNotFound(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = "echo starting; no-such-command-xyz --flag"
	w := newFakeWorkspace(t, run)
	res := runJob(t, w, runOptions{})
	if res.code != 127 {
		t.Fatalf("exit code %d, want 127; stderr:\n%s", res.code, res.stderr)
	}
	if !strings.HasPrefix(res.term, "command not found: ") || !strings.Contains(res.term, "no-such-command-xyz: command not found") ||
		strings.Contains(res.term, "starting") {
		t.Errorf("termination message %q", res.term)
	}
}

func TestRunCancelForwardsSIGTERM(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	// The child is in the same group: it gets SIGTERM too, and its trap
	// tells.
	run.Command = `trap 'echo "bash got TERM"; exit 7' TERM
bash -c 'trap "echo child got TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done' &
while :; do sleep 0.05; done`
	w := newFakeWorkspace(t, run)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &clustertest.Log{}
	go func() {
		waitFor(t, "the command to start", func() bool { return strings.Contains(stdout.String(), "ready") })
		cancel()
	}()
	start := time.Now()
	res := runJob(t, w, runOptions{ctx: ctx, stdout: stdout})
	if res.code != 7 {
		t.Fatalf("exit code %d, want the command's 7; stderr:\n%s", res.code, res.stderr)
	}
	if time.Since(start) > killGrace+5*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	log := w.log("user_logs/std_log.txt")
	for _, s := range []string{"ready\n", "bash got TERM\n", "child got TERM\n"} {
		if !strings.Contains(log, s) {
			t.Errorf("log %q lacks %q", log, s)
		}
	}
	if !strings.HasPrefix(res.term, "canceled") {
		t.Errorf("termination message %q", res.term)
	}
	if got := w.phaseNames(); !slices.Equal(got, []string{"Preparing", "Running"}) {
		t.Errorf("phases %v, want no Finalizing after a cancel", got)
	}
}

func TestRunCancelKillsAfterGrace(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = `trap '' TERM; echo ready; while :; do sleep 0.05; done`
	w := newFakeWorkspace(t, run)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &clustertest.Log{}
	var canceled time.Time
	go func() {
		waitFor(t, "the command to start", func() bool { return strings.Contains(stdout.String(), "ready") })
		canceled = time.Now()
		cancel()
	}()
	res := runJob(t, w, runOptions{ctx: ctx, stdout: stdout})
	if res.code != 137 {
		t.Fatalf("exit code %d, want 137 (SIGKILL); stderr:\n%s", res.code, res.stderr)
	}
	if d := time.Since(canceled); d < killGrace {
		t.Errorf("killed %s after the cancel, before the grace of %s", d, killGrace)
	}
}

func TestRunLogRetryAfterLostAnswer(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	// The second half waits until the workspace has answered 409, so that
	// appends after the resync are tested too.
	flag := filepath.Join(t.TempDir(), "go-on")
	run.Command = `for i in $(seq 1 100); do echo "line $i"; done
while [ ! -e ` + flag + ` ]; do sleep 0.01; done
for i in $(seq 101 200); do echo "line $i"; done`
	w := newFakeWorkspace(t, run)
	w.loseAppendAnswer = true
	go func() {
		waitFor(t, "a 409", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return slices.ContainsFunc(w.appends, func(a appendRecord) bool { return a.status == 409 })
		})
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Error(err)
		}
	}()
	res := runJob(t, w, runOptions{})
	if res.code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", res.code, res.stderr)
	}
	var want strings.Builder
	for i := 1; i <= 200; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if got := w.log("user_logs/std_log.txt"); got != want.String() {
		t.Errorf("log:\n%s\nwant each line once:\n%s", got, want.String())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var statuses []int
	for _, a := range w.appends {
		statuses = append(statuses, a.status)
	}
	if len(statuses) < 3 || statuses[0] != 503 || statuses[1] != 409 || statuses[len(statuses)-1] != 204 {
		t.Errorf("append answers %v: want 503 (answer lost), 409 (resync), then more", statuses)
	}
}

func TestRunProcesses(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs, run.Outputs = "", nil, nil
	run.Command = `echo "rank=$RANK local=$LOCAL_RANK name=$AZUREML_PROCESS_NAME"
if [ "$RANK" = 1 ]; then
  while [ ! -e rank0-ready ]; do sleep 0.01; done
  echo failing; exit 5
fi
trap 'echo stopped; exit 0' TERM
touch rank0-ready
while :; do sleep 0.05; done`
	w := newFakeWorkspace(t, run)
	res := runJob(t, w, runOptions{env: map[string]string{
		EnvProcessesPerInstance: "2", EnvFramework: "pytorch", EnvHosts: "host-0",
	}})
	if res.code != 5 {
		t.Fatalf("exit code %d, want 5 (rank 1's); stderr:\n%s", res.code, res.stderr)
	}
	// bash may say "Terminated" of its sleep before the trap runs.
	if got := w.log("user_logs/std_log_process_0.txt"); !strings.HasPrefix(got, "rank=0 local=0 name=rank_0\n") || !strings.HasSuffix(got, "stopped\n") {
		t.Errorf("rank 0 log %q: want its line, then the trap's on SIGTERM", got)
	}
	if got, want := w.log("user_logs/std_log_process_1.txt"), "rank=1 local=1 name=rank_1\nfailing\n"; got != want {
		t.Errorf("rank 1 log %q, want %q", got, want)
	}
	if res.term != "exit code 5: rank=1 local=1 name=rank_1\nfailing" {
		t.Errorf("termination message %q", res.term)
	}
	if w.log("user_logs/std_log.txt") != "" {
		t.Errorf("a job of 2 processes wrote std_log.txt")
	}
	for _, l := range []string{"rank=0 local=0 name=rank_0\n", "rank=1 local=1 name=rank_1\n", "stopped\n", "failing\n"} {
		if !strings.Contains(res.stdout, l) {
			t.Errorf("stdout %q lacks the whole line %q", res.stdout, l)
		}
	}
}

func TestRunWrapperFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*api.JobRun)
		put    bool
		want   string
	}{
		{"missing input data", func(r *api.JobRun) { r.Inputs["data"] = api.RunInput{Type: "uri_folder", URI: uri("nowhere/")} }, true,
			"downloading input data: "},
		{"bad input URI", func(r *api.JobRun) { r.Inputs["data"] = api.RunInput{Type: "uri_folder", URI: "https://example.com/x"} }, true,
			"input data: datastore URI"},
		{"unknown reference", func(r *api.JobRun) { r.Command = "echo ${{inputs.nope}}" }, true,
			`the job's command: ${{inputs.nope}}: no input "nope"`},
		{"uri_file output not written", func(r *api.JobRun) { r.Command = "true" }, true,
			"uploading output score to azureml://datastores/workspaceblobstore/paths/azureml/job_1/score/score.txt: the command wrote no file"},
		{"missing code", func(r *api.JobRun) {}, false, "downloading the code: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := fullJob()
			tc.change(&run)
			w := newFakeWorkspace(t, run)
			if tc.put {
				putJobFiles(w)
			}
			res := runJob(t, w, runOptions{})
			if res.code != 1 {
				t.Fatalf("exit code %d, want 1; stderr:\n%s", res.code, res.stderr)
			}
			if !strings.Contains(res.term, tc.want) || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("termination message %q / stderr %q, want %q in both", res.term, res.stderr, tc.want)
			}
		})
	}
}

func TestRunBadToken(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, fullJob())
	res := runJob(t, w, runOptions{env: map[string]string{v1.EnvJobToken: "wrong-token"}})
	if res.code != 1 || !strings.Contains(res.term, "getting the job's spec") || !strings.Contains(res.term, "401") {
		t.Errorf("exit code %d, termination message %q", res.code, res.term)
	}
	if strings.Contains(res.stderr+res.term, "wrong-token") {
		t.Errorf("the token was printed")
	}
}

func TestInstall(t *testing.T) {
	t.Parallel()
	dst := filepath.Join(t.TempDir(), "bin", "outpost")
	if err := Install(dst); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the installed binary differs from the running one")
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %o, want 755", st.Mode().Perm())
	}
	entries, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestRunCanceledWhilePreparing(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, fullJob())
	w.specFailures = 1 << 30 // the workspace does not come back
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waitFor(t, "a try at the spec", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.specFailures < 1<<30
		})
		cancel()
	}()
	res := runJob(t, w, runOptions{ctx: ctx})
	if res.code != 143 || res.term != "canceled before the command started" {
		t.Errorf("exit code %d, termination message %q", res.code, res.term)
	}
}

// TestRunOtherInstance: an instance other than 0 reports no phase, writes
// its own log file, and uploads its outputs too.
func TestRunOtherInstance(t *testing.T) {
	t.Parallel()
	run := fullJob()
	run.Code, run.Inputs = "", map[string]api.RunInput{"raw": {Type: "uri_folder", URI: uri("datasets/d1/"), Mode: "direct"}}
	run.Outputs = map[string]api.RunOutput{"model": {Type: "uri_folder", URI: uri("azureml/job_1/model/")}}
	run.Command = `echo "raw=${{inputs.raw}}"; echo 1 > ${{outputs.model}}/from-1.txt; echo 1 > outputs/from-1.txt`
	w := newFakeWorkspace(t, run)
	res := runJob(t, w, runOptions{env: map[string]string{EnvInstanceCount: "2", EnvInstanceIndex: "1", EnvHosts: "h0,h1"}})
	if res.code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", res.code, res.stderr)
	}
	if p := w.phaseNames(); len(p) != 0 {
		t.Errorf("instance 1 reported phases %v", p)
	}
	if got, want := w.log("user_logs/std_log_process_1.txt"), "raw="+uri("datasets/d1/")+"\n"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	for _, p := range []string{"azureml/job_1/model/from-1.txt", "ExperimentRun/dcid.job_1/outputs/from-1.txt"} {
		if _, ok := w.get(ds, p); !ok {
			t.Errorf("%s was not uploaded", p)
		}
	}
}
