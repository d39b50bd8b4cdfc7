package scoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	v1 "outpost.dev/outpost/api/inference/v1alpha1"
	training "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
)

// These tests run `score serve` and `score fetch` (Serve, Fetch) against
// fakeRunAPI, the deployment-run routes of api/deployrun.go, with the
// machine's Python running the embedded server.

const ds = "workspaceblobstore"

func dsURI(p string) string { return "azureml://datastores/" + ds + "/paths/" + p }

const instance = "e1-blue-7d9f-abcde"

// serveScript reads its model at init() and tells what it sees.
const serveScript = `
import json, os
import helper

WEIGHTS = None

def init():
    global WEIGHTS
    if os.environ.get("FAIL"):
        raise FileNotFoundError("no weights in " + os.environ["AZUREML_MODEL_DIR"])
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "weights.txt")) as f:
        WEIGHTS = f.read()

def run(raw_data):
    req = json.loads(raw_data)
    if req.get("die"):
        print("about to die", flush=True)
        os._exit(7)
    secrets = [k for k in os.environ if k.startswith("OUTPOST_DEPLOYMENT_") or k.startswith("OUTPOST_PROXY")]
    return {"weights": WEIGHTS, "model_dir": os.environ["AZUREML_MODEL_DIR"], "greeting": os.environ.get("GREETING"),
            "secrets": secrets, "cwd": os.getcwd(), "helper": helper.NAME, "entry": os.environ.get("AZUREML_ENTRY_SCRIPT")}
`

// deployment is a fake run API serving a model folder and a code folder.
func deployment(t *testing.T, script string) *fakeRunAPI {
	f := newFakeRunAPI(t, api.DeploymentRun{
		Name: "blue", Endpoint: "e1", ResourceGroup: "rg1", Workspace: "ws1",
		ModelURI: dsURI("LocalUpload/m1/model/"), ModelName: "diabetes", ModelVersion: "3", ModelFolder: "model",
		Code: dsURI("LocalUpload/c1/onlinescoring/"), ScoringScript: "score.py",
		EnvironmentVariables: map[string]string{"GREETING": "hello", "AZUREML_MODEL_DIR": "/not/here"},
	})
	f.put(ds, "LocalUpload/m1/model/weights.txt", "0.5 1.5 -2")
	f.put(ds, "LocalUpload/m1/model/sub/notes.txt", "trained on 353 rows")
	f.put(ds, "LocalUpload/m1/other.txt", "not the model")
	f.put(ds, "LocalUpload/c1/onlinescoring/score.py", script)
	f.put(ds, "LocalUpload/c1/onlinescoring/helper.py", "NAME = 'helper'\n")
	return f
}

// serving is a run of Serve.
type serving struct {
	t      *testing.T
	root   string
	term   string
	stdout *syncBuffer
	stderr *syncBuffer
	url    string
	cancel context.CancelFunc
	done   chan int
}

// settings are a pod's environment for f: its credentials, its name.
func settings(f *fakeRunAPI, term string) map[string]string {
	return map[string]string{
		v1.EnvDeploymentURL:   f.base,
		v1.EnvDeploymentToken: f.token,
		v1.EnvDeploymentCA:    f.caPEM,
		training.EnvProxy:     "",
		EnvPodName:            instance,
		EnvTerminationLog:     term,
		"PATH":                os.Getenv("PATH"),
	}
}

func startServe(t *testing.T, f *fakeRunAPI, extra map[string]string) *serving {
	t.Helper()
	s := &serving{t: t, root: t.TempDir(), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan int, 1)}
	s.term = filepath.Join(t.TempDir(), "termination-log")
	env := settings(f, s.term)
	for k, v := range extra {
		env[k] = v
	}
	environ := func() []string {
		out := os.Environ()
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		return out
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- Serve(ctx, Options{Root: s.root, Host: "127.0.0.1", Port: -1}, func(k string) string { return env[k] }, environ, s.stdout, s.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return 30 s after its context ended")
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", s.stdout, s.stderr)
		}
	})
	return s
}

// listening waits for the server's address.
func (s *serving) listening() {
	s.t.Helper()
	clustertest.Eventually(s.t, 30*time.Second, "the scoring server listening", func() error {
		if m := listeningRE.FindStringSubmatch(s.stdout.String()); m != nil {
			s.url = "http://127.0.0.1:" + m[1]
			return nil
		}
		return errors.New("not yet")
	})
}

// exit waits for Serve's exit code.
func (s *serving) exit() int {
	s.t.Helper()
	select {
	case code := <-s.done:
		s.done <- code
		return code
	case <-time.After(60 * time.Second):
		s.t.Fatalf("Serve did not return\nstdout:\n%s\nstderr:\n%s", s.stdout, s.stderr)
		return 0
	}
}

func (s *serving) termination() string {
	data, err := os.ReadFile(s.term)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return string(data)
}

func TestServe(t *testing.T) {
	f := deployment(t, serveScript)
	s := startServe(t, f, nil)
	s.listening()
	py := &pyServer{t: t, url: s.url}
	py.waitHealthy()

	r := py.do("POST", "/score", `{"data": [[1, 2]]}`)
	if r.status != 200 {
		t.Fatalf("POST /score = %d %q", r.status, r.body)
	}
	modelDir := filepath.Join(s.root, "azureml-models", "diabetes", "3")
	want := fmt.Sprintf(`{"weights": "0.5 1.5 -2", "model_dir": %q, "greeting": "hello", "secrets": [], "cwd": %q, "helper": "helper", "entry": "score.py"}`,
		modelDir, filepath.Join(s.root, "code"))
	if r.body != want {
		t.Errorf("run() saw\n %s\nwant\n %s", r.body, want)
	}
	// The model keeps its folder's name under AZUREML_MODEL_DIR; nothing
	// else of the datastore came along.
	for _, p := range []string{"model/weights.txt", "model/sub/notes.txt"} {
		if _, err := os.Stat(filepath.Join(modelDir, filepath.FromSlash(p))); err != nil {
			t.Errorf("model file %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(modelDir, "other.txt")); err == nil {
		t.Errorf("other.txt, outside the model's folder, was downloaded")
	}

	// The instance's log in the workspace: the wrapper's lines and the
	// server's, requests included.
	clustertest.Eventually(t, 20*time.Second, "the request in the workspace's log", func() error {
		l := f.log(instance)
		for _, want := range []string{"downloaded model " + dsURI("LocalUpload/m1/model/"), "listening on 127.0.0.1:", "init() returned", "POST /score 200"} {
			if !strings.Contains(l, want) {
				return fmt.Errorf("no %q in the log:\n%s", want, l)
			}
		}
		return nil
	})

	s.cancel() // SIGTERM
	if code := s.exit(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if m := s.termination(); m != "" {
		t.Errorf("termination message %q after a clean stop, want none", m)
	}
	// Everything printed is in the workspace: the local copy and the
	// workspace's log are the same.
	local, err := os.ReadFile(filepath.Join(s.root, "logs", instance))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.log(instance); got != string(local) || !strings.Contains(got, "stopped") {
		t.Errorf("the workspace's log differs from the local copy or lacks the end:\n%s\n---\n%s", got, local)
	}
	if strings.Contains(s.stdout.String()+s.stderr.String()+f.log(instance), f.token) {
		t.Errorf("the deployment's token is in the output")
	}
}

func TestServeInitFailure(t *testing.T) {
	f := deployment(t, serveScript)
	f.run.EnvironmentVariables["FAIL"] = "1"
	s := startServe(t, f, nil)
	if code := s.exit(); code != ExitInitFailed {
		t.Fatalf("exit code = %d, want %d", code, ExitInitFailed)
	}
	msg := s.termination()
	if !strings.Contains(msg, "Traceback") || !strings.Contains(msg, "FileNotFoundError: no weights in "+filepath.Join(s.root, "azureml-models", "diabetes", "3")) {
		t.Errorf("termination message = %q, want init()'s traceback", msg)
	}
	if l := f.log(instance); !strings.Contains(l, "init() failed:\nTraceback") {
		t.Errorf("the workspace's log lacks the traceback:\n%s", l)
	}
}

func TestServeServerDies(t *testing.T) {
	f := deployment(t, serveScript)
	s := startServe(t, f, nil)
	s.listening()
	py := &pyServer{t: t, url: s.url}
	py.waitHealthy()
	if resp, err := http.Post(s.url+"/score", "application/json", strings.NewReader(`{"die": true}`)); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Fatalf("POST /score of a server that exits = %d, want no answer", resp.StatusCode)
	}
	if code := s.exit(); code != 7 {
		t.Fatalf("exit code = %d, want the server's 7", code)
	}
	if msg := s.termination(); !strings.Contains(msg, "the scoring server exited with code 7") || !strings.Contains(msg, "about to die") {
		t.Errorf("termination message = %q, want the exit code and the end of the log", msg)
	}
}

func TestServeLogFollowsThePreviousContainer(t *testing.T) {
	f := deployment(t, serveScript)
	f.logs[instance] = []byte("the container before\n")
	s := startServe(t, f, nil)
	s.listening()
	(&pyServer{t: t, url: s.url}).waitHealthy()
	s.cancel()
	if code := s.exit(); code != 0 {
		t.Fatalf("exit code = %d", code)
	}
	local, err := os.ReadFile(filepath.Join(s.root, "logs", instance))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.log(instance), "the container before\n"+string(local); got != want {
		t.Errorf("the workspace's log =\n%s\nwant the previous one followed by this one:\n%s", got, want)
	}
}

func TestServeRefusals(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(f *fakeRunAPI, env map[string]string)
		want   string
	}{
		{"no scoring script", func(f *fakeRunAPI, _ map[string]string) { f.run.ScoringScript = "" }, "no code_configuration.scoring_script"},
		{"no code", func(f *fakeRunAPI, _ map[string]string) { f.run.Code = "" }, "no code_configuration.code"},
		{"script not in the code", func(f *fakeRunAPI, _ map[string]string) { f.run.ScoringScript = "src/main.py" }, "the scoring script src/main.py is not in the code folder"},
		{"bad model version", func(f *fakeRunAPI, _ map[string]string) { f.run.ModelVersion = "../1" }, `model version "../1"`},
		{"model not there", func(f *fakeRunAPI, _ map[string]string) { f.run.ModelURI = dsURI("LocalUpload/none/") }, "no such file or folder"},
		{"model file changed since listed", func(f *fakeRunAPI, _ map[string]string) {
			f.lie[ds+"/LocalUpload/m1/model/weights.txt"] = strings.Repeat("ab", 32)
		}, "model/weights.txt has sha256 " + digest([]byte("0.5 1.5 -2")) + ", the listing says " + strings.Repeat("ab", 32)},
		{"no credentials", func(_ *fakeRunAPI, env map[string]string) {
			delete(env, v1.EnvDeploymentToken)
			delete(env, v1.EnvDeploymentCA)
		}, "missing environment variable(s) OUTPOST_DEPLOYMENT_TOKEN, OUTPOST_DEPLOYMENT_CA"},
		{"bad CA", func(_ *fakeRunAPI, env map[string]string) { env[v1.EnvDeploymentCA] = "not a certificate" }, "OUTPOST_DEPLOYMENT_CA: no PEM certificate"},
		{"wrong token", func(_ *fakeRunAPI, env map[string]string) { env[v1.EnvDeploymentToken] = "stale" }, "401"},
		{"no python", func(_ *fakeRunAPI, env map[string]string) { env["PATH"] = t.TempDir() }, "neither python3 nor python is on the image's PATH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := deployment(t, serveScript)
			s := &serving{t: t, root: t.TempDir(), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
			s.term = filepath.Join(t.TempDir(), "termination-log")
			env := settings(f, s.term)
			c.change(f, env)
			environ := func() []string {
				out := []string{}
				for k, v := range env {
					out = append(out, k+"="+v)
				}
				return out
			}
			code := Serve(context.Background(), Options{Root: s.root, Host: "127.0.0.1", Port: -1}, func(k string) string { return env[k] }, environ, s.stdout, s.stderr)
			if code != 1 {
				t.Fatalf("exit code = %d, want 1\n%s", code, s.stderr)
			}
			if msg := s.termination(); !strings.Contains(msg, c.want) {
				t.Errorf("termination message = %q, want it to say %q", msg, c.want)
			}
			if !strings.Contains(s.stderr.String(), c.want) {
				t.Errorf("stderr = %q, want it to say %q", s.stderr, c.want)
			}
			if strings.Contains(s.stderr.String(), f.token) {
				t.Errorf("stderr shows the token")
			}
		})
	}
}

func TestFetch(t *testing.T) {
	f := newFakeRunAPI(t, api.DeploymentRun{Name: "byoc", Endpoint: "e1",
		ModelURI: dsURI("models/tf/2/saved_model.pb"), ModelName: "tf", ModelVersion: "2"})
	f.put(ds, "models/tf/2/saved_model.pb", "graph")
	f.put(ds, "models/tf/2/saved_model.pb.bak", "not this one")
	root, term := t.TempDir(), filepath.Join(t.TempDir(), "term")
	env := settings(f, term)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	if code := Fetch(context.Background(), root, func(k string) string { return env[k] }, stdout, stderr); code != 0 {
		t.Fatalf("exit code %d\n%s", code, stderr)
	}
	dir := filepath.Join(root, "azureml-models", "tf", "2")
	if got := strings.TrimSpace(stdout.String()); got != dir {
		t.Errorf("stdout = %q, want the model's folder %s", got, dir)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "saved_model.pb" {
		t.Errorf("%s holds %v, want saved_model.pb alone (a model that is a file)", dir, entries)
	}

	// No model: nothing to do.
	f.run.ModelURI = ""
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	if code := Fetch(context.Background(), t.TempDir(), func(k string) string { return env[k] }, stdout, stderr); code != 0 || !strings.Contains(stderr.String(), "no model") {
		t.Errorf("a deployment without a model: exit %d, stderr %q", code, stderr)
	}
}
