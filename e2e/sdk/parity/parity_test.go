// Package parity checks that the Python SDK (sdk/python) reads files and
// sends requests as the CLI does: every YAML case and example gives the same
// JSON through the SDK's own YAML reader as through the CLI's
// (internal/mlyaml), and a job file submitted with MLClient uploads the same
// blobs, commits the same files and PUTs the same job as `outpost ml job
// create -f` for the same file, against a recording workspace on loopback.
// No cluster is needed.
package parity

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/mlyaml"
)

// python is the interpreter the SDK is tested with (Debian's, 3.11).
const python = "/usr/bin/python3"

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func sdkDir(t *testing.T) string { return filepath.Join(repoRoot(t), "sdk", "python") }

// pyRun runs python with the SDK's source on the path.
func pyRun(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(python, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "PYTHONPATH="+sdkDir(t), "PYTHONDONTWRITEBYTECODE=1"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// decodeNumbers reads JSON keeping each number's text.
func decodeNumbers(data string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

var (
	lineRE        = regexp.MustCompile(`: line (\d+): `)
	libraryPlaced = regexp.MustCompile(`did not find expected|found unexpected end of stream|could not find expected`)
)

// TestYAMLMatchesCLI compares the SDK's reader with the CLI's on the SDK's
// YAML cases (ok/: both read them alike; bad/: both refuse them, at the
// same line; refused/: the SDK refuses what it does not support) and on
// every YAML file of examples/.
func TestYAMLMatchesCLI(t *testing.T) {
	root := repoRoot(t)
	cases := filepath.Join(sdkDir(t), "tests", "yaml")
	var files []string
	for _, dir := range []string{"ok", "bad", "refused"} {
		m, err := filepath.Glob(filepath.Join(cases, dir, "*.yml"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no cases in %s: %v", dir, err)
		}
		files = append(files, m...)
	}
	err := filepath.WalkDir(filepath.Join(root, "examples"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := pyRun(t, root, nil, append([]string{filepath.Join(sdkDir(t), "tests", "yaml_to_json.py")}, files...)...)
	if code != 0 {
		t.Fatalf("yaml_to_json.py: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(files) {
		t.Fatalf("yaml_to_json.py printed %d lines for %d files:\n%s", len(lines), len(files), out)
	}
	for i, f := range files {
		rel, _ := filepath.Rel(root, f)
		py := lines[i]
		pyErr, pyFailed := strings.CutPrefix(py, "ERROR ")
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var goJSON []byte
		doc, goErr := mlyaml.Load(f, data)
		if goErr == nil {
			goJSON, goErr = doc.JSON()
		}
		switch dir := filepath.Base(filepath.Dir(f)); {
		case dir == "refused":
			if !pyFailed {
				t.Errorf("%s: the SDK read what it should refuse: %s", rel, py)
			}
		case dir == "bad" || goErr != nil:
			if goErr == nil || !pyFailed {
				t.Errorf("%s: CLI error %v, SDK %s", rel, goErr, py)
				continue
			}
			// The CLI's YAML library puts some syntax errors where it gave
			// up (the end of the file for an unclosed quote); the SDK puts
			// them where the construct starts. Lines of the others agree.
			gl, pl := lineRE.FindStringSubmatch(goErr.Error()), lineRE.FindStringSubmatch(pyErr)
			if libraryPlaced.MatchString(goErr.Error()) {
				if pl == nil {
					t.Errorf("%s: the SDK's error has no line: %s", rel, pyErr)
				}
				continue
			}
			if gl == nil || pl == nil || gl[1] != pl[1] {
				t.Errorf("%s: different lines:\n CLI: %v\n SDK: %s", rel, goErr, pyErr)
			}
		default:
			if pyFailed {
				t.Errorf("%s: the SDK refused what the CLI reads: %s", rel, pyErr)
				continue
			}
			want, err1 := decodeNumbers(string(goJSON))
			got, err2 := decodeNumbers(py)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
				t.Errorf("%s: different JSON (%v %v):\n CLI: %s\n SDK: %s", rel, err1, err2, goJSON, py)
			}
		}
	}
}

// recorder is a workspace's datastore, job and compute routes in memory,
// keeping what clients sent.
type recorder struct {
	t       *testing.T
	token   string
	mu      sync.Mutex
	blobs   map[string][]byte
	files   map[string]api.FileInfo // committed, by path
	commits [][]api.FileInfo
	jobs    map[string][]byte // PUT bodies by name
	compute []byte            // the last compute PUT body
}

func newRecorder(t *testing.T, token string) *recorder {
	return &recorder{t: t, token: token, blobs: map[string][]byte{}, files: map[string]api.FileInfo{}, jobs: map[string][]byte{}}
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Code: "Test", Message: msg})
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+rec.token {
		writeErr(w, http.StatusUnauthorized, "bad token")
		return
	}
	const base = "/resourceGroups/rg/workspaces/ws"
	p, ok := strings.CutPrefix(r.URL.Path, base)
	if !ok {
		writeErr(w, http.StatusNotFound, "not a route of this test: "+r.URL.Path)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	switch {
	case r.Method == "GET" && p == "/datastores/workspaceblobstore/files":
		prefix := r.URL.Query().Get("prefix")
		out := []api.FileInfo{}
		for path, f := range rec.files {
			if strings.HasPrefix(path, prefix) {
				out = append(out, f)
			}
		}
		json.NewEncoder(w).Encode(out)
	case strings.HasPrefix(p, "/blobs/sha256:"):
		digest := strings.TrimPrefix(p, "/blobs/sha256:")
		switch r.Method {
		case "HEAD":
			if _, ok := rec.blobs[digest]; !ok {
				w.WriteHeader(http.StatusNotFound)
			}
		case "PUT":
			sum := sha256.Sum256(body)
			if hex.EncodeToString(sum[:]) != digest {
				writeErr(w, http.StatusBadRequest, "digest mismatch")
				return
			}
			rec.blobs[digest] = body
			w.WriteHeader(http.StatusCreated)
		default:
			writeErr(w, http.StatusMethodNotAllowed, r.Method)
		}
	case r.Method == "POST" && p == "/datastores/workspaceblobstore/commit":
		var c api.CommitRequest
		if err := json.Unmarshal(body, &c); err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		for _, f := range c.Files {
			if _, ok := rec.blobs[f.SHA256]; !ok {
				writeErr(w, http.StatusBadRequest, "commit of a blob never uploaded: "+f.Path)
				return
			}
			rec.files[f.Path] = f
		}
		rec.commits = append(rec.commits, c.Files)
		json.NewEncoder(w).Encode(c.Files)
	case r.Method == "PUT" && strings.HasPrefix(p, "/jobs/"):
		name := strings.TrimPrefix(p, "/jobs/")
		rec.jobs[name] = body
		spec, err := jobspec.Decode(body)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(api.Job{JobSpec: *spec, Status: api.JobNotStarted, ResourceGroup: "rg", Workspace: "ws"})
	case r.Method == "PUT" && strings.HasPrefix(p, "/computes/"):
		rec.compute = body
		var req api.ComputeRequest
		if err := json.Unmarshal(body, &req); err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(api.Compute{Name: strings.TrimPrefix(p, "/computes/"), Type: "Kubernetes", ResourceID: req.ResourceID,
			Namespace: req.Namespace, ProvisioningState: api.StateSucceeded, Identity: api.Identity{Type: req.IdentityType}})
	default:
		writeErr(w, http.StatusNotFound, "not a route of this test: "+r.Method+" "+r.URL.Path)
	}
}

// workspace is a recording workspace over HTTPS and the environment that
// logs the CLI and the SDK in to it.
type workspace struct {
	rec *recorder
	env []string
}

func startWorkspace(t *testing.T) *workspace {
	const token = "parity-test-token-0123456789abcdefghijklmnop"
	rec := newRecorder(t, token)
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &workspace{rec: rec, env: []string{"OUTPOST_URL=" + srv.URL, "OUTPOST_TOKEN=" + token, "OUTPOST_CA_FILE=" + ca,
		"OUTPOST_CONFIG=" + filepath.Join(t.TempDir(), "no-login.json")}}
}

// submitScript submits argv[1] as job argv[2] with MLClient.
const submitScript = `
import sys
from outpost.ml import MLClient, load_job
ml_client = MLClient(resource_group_name="rg", workspace_name="ws")
job = load_job(sys.argv[1])
job.name = sys.argv[2]
print(ml_client.jobs.create_or_update(job).name)
`

// trickyJob writes a job whose code folder has ignore files (nested, with
// re-inclusion and anchors), an executable, a symbolic link, a non-ASCII
// name and a .git folder; local file and folder inputs; an environment file
// with a conda file; and numbers written in several ways.
func trickyJob(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"job.yml": `$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
code: ./src
command: >-
  python run.py --lr ${{inputs.lr}} --big ${{inputs.big}} --flag ${{inputs.flag}} --hex ${{inputs.hexa}}
  --data ${{inputs.data}} --one ${{inputs.one}}
inputs:
  lr: 1.50
  big: 1e3
  flag: yes
  hexa: 0x1F
  text: "quoted: text"
  data:
    type: uri_folder
    path: ./data
  one:
    type: uri_file
    path: data/one.csv
  remote:
    type: uri_folder
    path: azureml://datastores/workspaceblobstore/paths/somewhere/
outputs:
  model:
environment: file:./env/environment.yml
compute: azureml:local-compute
tags: {epochs: 10, rate: 0.10, on: on}
environment_variables:
  A: 1
  B: "two"
`,
		"src/run.py":             "print('run')\n",
		"src/.amlignore":         "# comment\n*.log\n!keep.log\ncache/\n/top-only.txt\n**/deep.tmp\nsub/*.bin\n",
		"src/keep.log":           "kept\n",
		"src/drop.log":           "dropped\n",
		"src/cache/x.txt":        "cached\n",
		"src/top-only.txt":       "top\n",
		"src/sub/top-only.txt":   "not at the top: kept\n",
		"src/sub/a/b/deep.tmp":   "deep\n",
		"src/sub/x.bin":          "bin\n",
		"src/sub/.gitignore":     "*.bak\n",
		"src/sub/old.bak":        "old\n",
		"src/sub/ünï.txt":        "unicode\n",
		"src/.git/HEAD":          "ref: refs/heads/main\n",
		"data/one.csv":           "a,b\n1,2\n",
		"data/two.csv":           "a,b\n3,4\n",
		"env/environment.yml":    "name: tricky\nversion: 3\nimage: library/python:latest\nconda_file: conda.yml\n",
		"env/conda.yml":          "name: tricky\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip:\n    - requests\n",
		"src/tools/run-all.sh":   "#!/bin/sh\necho all\n",
		"src/tools/notexec.sh":   "echo no\n",
		"src/sub/a/b/keep.me.md": "kept\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "src", "tools", "run-all.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("run.py", filepath.Join(dir, "src", "link.py")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "job.yml")
}

// canonical is a job body as the workspace reads it.
func canonical(t *testing.T, body []byte) string {
	t.Helper()
	spec, err := jobspec.Decode(body)
	if err != nil {
		t.Fatalf("the workspace would refuse %s: %v", body, err)
	}
	out, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func sortedCommits(cs [][]api.FileInfo) []string {
	var out []string
	for _, c := range cs {
		var paths []string
		for _, f := range c {
			paths = append(paths, fmt.Sprintf("%s %d %s %o", f.Path, f.Size, f.SHA256, f.Mode))
		}
		sort.Strings(paths)
		out = append(out, strings.Join(paths, "\n"))
	}
	sort.Strings(out)
	return out
}

func TestJobSubmissionMatchesCLI(t *testing.T) {
	outpost, err := clustertest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	jobs, err := filepath.Glob(filepath.Join(root, "examples", "jobs", "*", "job.yml"))
	if err != nil || len(jobs) == 0 {
		t.Fatalf("no example jobs: %v", err)
	}
	tricky := trickyJob(t)
	jobs = append(jobs, tricky)
	// Both run in one folder: a job without experiment_name is filed under
	// its name.
	cwd := filepath.Join(t.TempDir(), "parity-experiment")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, file := range jobs {
		name := fmt.Sprintf("parity_job_%d", i)
		rel, _ := filepath.Rel(root, file)
		label := filepath.Base(filepath.Dir(file))
		if file == tricky {
			label = "tricky"
		}
		t.Run(label, func(t *testing.T) {
			cli, sdk := startWorkspace(t), startWorkspace(t)
			cmd := exec.Command(outpost, "ml", "job", "create", "-f", file, "-g", "rg", "-w", "ws", "--name", name)
			cmd.Dir = cwd
			cmd.Env = append(os.Environ(), cli.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("outpost ml job create -f %s: %v\n%s", rel, err, out)
			}
			out, errOut, code := pyRun(t, cwd, sdk.env, "-c", submitScript, file, name)
			if code != 0 || strings.TrimSpace(out) != name {
				t.Fatalf("SDK submit of %s: exit %d\n%s\n%s", rel, code, out, errOut)
			}
			if got, want := canonical(t, sdk.rec.jobs[name]), canonical(t, cli.rec.jobs[name]); got != want {
				t.Errorf("%s: the SDK's job differs from the CLI's:\n CLI: %s\n SDK: %s\n (SDK sent %s)", rel, want, got, sdk.rec.jobs[name])
			}
			if got, want := sortedCommits(sdk.rec.commits), sortedCommits(cli.rec.commits); !slices.Equal(got, want) {
				t.Errorf("%s: the SDK's commits differ from the CLI's:\n CLI: %q\n SDK: %q", rel, want, got)
			}
			if got, want := len(sdk.rec.blobs), len(cli.rec.blobs); got != want {
				t.Errorf("%s: the SDK uploaded %d blobs, the CLI %d", rel, got, want)
			}
			// Uploaded content is reused: a second submission sends nothing.
			blobs, commits := len(sdk.rec.blobs), len(sdk.rec.commits)
			if _, errOut, code := pyRun(t, cwd, sdk.env, "-c", submitScript, file, name+"_again"); code != 0 {
				t.Fatalf("second SDK submit: exit %d\n%s", code, errOut)
			} else if len(sdk.rec.blobs) != blobs || len(sdk.rec.commits) != commits {
				t.Errorf("%s: the second submission uploaded again (%d -> %d blobs, %d -> %d commits)\n%s", rel,
					blobs, len(sdk.rec.blobs), commits, len(sdk.rec.commits), errOut)
			}
		})
	}
}

// attachScript attaches a compute with the seed's configuration.
const attachScript = `
from outpost.core.compute import KubernetesCompute, ComputeTarget
from outpost.core.workspace import Workspace
ws = Workspace(resource_group="rg", workspace_name="ws", _disable_service_check=True)
cfg = KubernetesCompute.attach_configuration(resource_id="/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1",
    namespace="team-a", identity_type="UserAssigned", identity_ids=["/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"])
c = ComputeTarget.attach(ws, "k8s", cfg)
print(c.provisioning_state)
`

func TestAttachMatchesCLI(t *testing.T) {
	outpost, err := clustertest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	cli, sdk := startWorkspace(t), startWorkspace(t)
	cmd := exec.Command(outpost, "ml", "compute", "attach", "-g", "rg", "-w", "ws", "--name", "k8s", "--type", "Kubernetes",
		"--resource-id", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/c1",
		"--namespace", "team-a", "--identity-type", "UserAssigned",
		"--user-assigned-identities", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1")
	cmd.Env = append(os.Environ(), cli.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("outpost ml compute attach: %v\n%s", err, out)
	}
	out, errOut, code := pyRun(t, t.TempDir(), sdk.env, "-c", attachScript)
	if code != 0 || strings.TrimSpace(out) != api.StateSucceeded {
		t.Fatalf("SDK attach: exit %d\n%s\n%s", code, out, errOut)
	}
	var want, got api.ComputeRequest
	if err := json.Unmarshal(cli.rec.compute, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(sdk.rec.compute, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("attach bodies differ:\n CLI: %s\n SDK: %s", cli.rec.compute, sdk.rec.compute)
	}
}
