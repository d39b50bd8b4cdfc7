package scoring

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

func goodRun() api.DeploymentRun {
	return api.DeploymentRun{Name: "blue", Endpoint: "e1",
		ModelURI: dsURI("LocalUpload/m1/model/"), ModelName: "diabetes", ModelVersion: "3", ModelFolder: "model",
		Code: dsURI("LocalUpload/c1/src/"), ScoringScript: "online/score.py"}
}

func TestMakePlan(t *testing.T) {
	p, err := makePlan(new(goodRun()), "/var/azureml-app")
	if err != nil {
		t.Fatal(err)
	}
	if p.model.dir != "/var/azureml-app/azureml-models/diabetes/3" || p.model.dest != "/var/azureml-app/azureml-models/diabetes/3/model" {
		t.Errorf("model dir %s, dest %s", p.model.dir, p.model.dest)
	}
	if p.model.from != (location{ds, "LocalUpload/m1/model/"}) || *p.code != (location{ds, "LocalUpload/c1/src/"}) || p.script != "online/score.py" {
		t.Errorf("plan = %+v, model %+v, code %+v", p, p.model, p.code)
	}

	// A model that is a file, without a folder to keep.
	r := goodRun()
	r.ModelURI, r.ModelFolder = dsURI("models/m/1/model.pkl"), ""
	if p, err := makePlan(&r, "/r"); err != nil || p.model.dest != "/r/azureml-models/diabetes/3" {
		t.Errorf("a file model: %v, %+v", err, p)
	}
	// No model: no AZUREML_MODEL_DIR.
	r = goodRun()
	r.ModelURI = ""
	if p, err := makePlan(&r, "/r"); err != nil || p.model != nil {
		t.Errorf("no model: %v, %+v", err, p)
	}

	for _, c := range []struct {
		name   string
		change func(*api.DeploymentRun)
		want   []string
	}{
		{"bad model URI", func(r *api.DeploymentRun) { r.ModelURI = "https://example.com/model.pkl" }, []string{"model: datastore URI"}},
		{"no model name", func(r *api.DeploymentRun) { r.ModelName = "" }, []string{`model name ""`}},
		{"model name with a slash", func(r *api.DeploymentRun) { r.ModelName = "a/b" }, []string{`model name "a/b"`}},
		{"model version ..", func(r *api.DeploymentRun) { r.ModelVersion = ".." }, []string{`model version ".."`}},
		{"model folder leaving", func(r *api.DeploymentRun) { r.ModelFolder = "../x" }, []string{"model folder"}},
		{"script leaving the code", func(r *api.DeploymentRun) { r.ScoringScript = "../score.py" }, []string{`scoring script "../score.py": want a path relative to the code folder`}},
		{"script absolute", func(r *api.DeploymentRun) { r.ScoringScript = "/score.py" }, []string{`scoring script "/score.py"`}},
		{"script not Python", func(r *api.DeploymentRun) { r.ScoringScript = "score.R" }, []string{`scoring script "score.R": want a Python file (.py)`}},
		{"bad code URI", func(r *api.DeploymentRun) { r.Code = "./src" }, []string{"code: datastore URI"}},
		// Every problem at once, not the first alone.
		{"several", func(r *api.DeploymentRun) { r.ModelName, r.Code, r.ScoringScript = "", "", "" }, []string{`model name ""`, "no code_configuration.code", "no code_configuration.scoring_script"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := goodRun()
			c.change(&r)
			_, err := makePlan(&r, "/r")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLocalNames(t *testing.T) {
	files := []api.FileInfo{{Path: "m/model.pkl", SHA256: "a"}, {Path: "m/model.pkl/x", SHA256: "b"}}
	// A path that is a file: that file, under its base name.
	if got, err := localNames(files, "m/model.pkl"); err != nil || len(got) != 1 || got["model.pkl"] != "a" {
		t.Errorf("file prefix: %v %v", got, err)
	}
	// A folder: paths below it.
	files = []api.FileInfo{{Path: "m/1/a.txt", SHA256: "a"}, {Path: "m/1/sub/b.txt", SHA256: "b"}}
	for _, prefix := range []string{"m/1", "m/1/"} {
		got, err := localNames(files, prefix)
		if err != nil || len(got) != 2 || got["a.txt"] != "a" || got["sub/b.txt"] != "b" {
			t.Errorf("folder prefix %q: %v %v", prefix, got, err)
		}
	}
	if _, err := localNames([]api.FileInfo{{Path: "elsewhere/a"}}, "m/1/"); err == nil {
		t.Errorf("a listing with a path outside the prefix was accepted")
	}
	if _, err := localNames(nil, "m/1/"); err == nil {
		t.Errorf("an empty listing was accepted")
	}
}

func TestVerifyTree(t *testing.T) {
	dir := t.TempDir()
	write := func(p, data string) {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("model/a.txt", "A")
	write("model/sub/b.txt", "B")
	want := map[string]string{"model/a.txt": digest([]byte("A")), "model/sub/b.txt": digest([]byte("B"))}
	if err := verifyTree(dir, want); err != nil {
		t.Fatalf("a tree as listed: %v", err)
	}
	write("model/sub/b.txt", "changed")
	write("model/extra.txt", "?")
	want["model/c.txt"] = digest([]byte("C"))
	err := verifyTree(dir, want)
	if err == nil {
		t.Fatal("a tree unlike its listing was accepted")
	}
	for _, w := range []string{"model/sub/b.txt has sha256 " + digest([]byte("changed")), "model/extra.txt is not in the listing", "not downloaded: model/c.txt"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func TestServerEnv(t *testing.T) {
	r := goodRun()
	r.EnvironmentVariables = map[string]string{"GREETING": "hi", "AZUREML_MODEL_DIR": "/mine", "PYTHONUNBUFFERED": "0"}
	p, err := makePlan(&r, "/root")
	if err != nil {
		t.Fatal(err)
	}
	env := serverEnv([]string{"PATH=/usr/bin", "OUTPOST_DEPLOYMENT_TOKEN=secret", "OUTPOST_DEPLOYMENT_URL=https://x", "OUTPOST_DEPLOYMENT_CA=pem",
		"OUTPOST_PROXY_HTTPS=http://user:pw@proxy:3128", "OUTPOST_PROXY_SKIP_RANGE=10.0.0.0/8", "HOME=/home/u", "GREETING=pod"}, &r, p, "/root/code")
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := got[k]; dup {
			t.Errorf("%s twice in the environment", k)
		}
		got[k] = v
	}
	for k, v := range map[string]string{
		"PATH": "/usr/bin", "HOME": "/home/u",
		"GREETING":             "hi",                              // the deployment's, over the pod's
		"PYTHONUNBUFFERED":     "0",                               // the deployment may say otherwise
		"AZUREML_MODEL_DIR":    "/root/azureml-models/diabetes/3", // not the deployment's
		"AML_APP_ROOT":         "/root/code",
		"AZUREML_ENTRY_SCRIPT": "online/score.py",
		"PWD":                  "/root/code",
	} {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "OUTPOST_") {
			t.Errorf("the server sees %s", k)
		}
	}
	r.ModelURI, r.EnvironmentVariables = "", nil
	p, _ = makePlan(&r, "/root")
	if slices.ContainsFunc(serverEnv(nil, &r, p, "/root/code"), func(kv string) bool { return strings.HasPrefix(kv, "AZUREML_MODEL_DIR=") }) {
		t.Errorf("AZUREML_MODEL_DIR set for a deployment without a model")
	}
}

func TestInstanceName(t *testing.T) {
	if n, err := instanceName(func(string) string { return "e1-blue-5c6d-x7k2p" }); err != nil || n != "e1-blue-5c6d-x7k2p" {
		t.Errorf("POD_NAME: %q %v", n, err)
	}
	if _, err := instanceName(func(string) string { return "a/b" }); err == nil || !strings.Contains(err.Error(), `POD_NAME "a/b"`) {
		t.Errorf("a name with a slash: %v", err)
	}
	if _, err := instanceName(func(string) string { return "Blue_1" }); err == nil {
		t.Errorf("a name the workspace refuses (capitals, '_') was taken")
	}
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	if n, err := instanceName(func(string) string { return "" }); err != nil || n != h {
		t.Errorf("no POD_NAME: %q %v, want the host name %q", n, err, h)
	}
}

func TestLoadConfigRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"http", map[string]string{"OUTPOST_DEPLOYMENT_URL": "http://127.0.0.1:1/x"}, "OUTPOST_DEPLOYMENT_URL: want an https:// URL"},
		{"user in URL", map[string]string{"OUTPOST_DEPLOYMENT_URL": "https://u:p@127.0.0.1/x"}, "OUTPOST_DEPLOYMENT_URL: want an https:// URL"},
		{"token with a space", map[string]string{"OUTPOST_DEPLOYMENT_TOKEN": "two words"}, "OUTPOST_DEPLOYMENT_TOKEN: want a single token"},
		{"proxy not a URL", map[string]string{"OUTPOST_PROXY_HTTPS": "::"}, "OUTPOST_PROXY_HTTPS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeRunAPI(t, goodRun())
			env := settings(f, "")
			for k, v := range c.env {
				env[k] = v
			}
			_, err := loadConfig(func(k string) string { return env[k] })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "two words") || strings.Contains(err.Error(), "u:p") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

func TestLastLines(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		b.WriteString("line " + string(rune('a'+i%26)) + "\n")
	}
	got := lastLines([]byte(b.String()), 3, 100)
	if got != "line b\nline c\nline d" {
		t.Errorf("lastLines = %q", got)
	}
	if got := lastLines([]byte("é"+strings.Repeat("x", 10)), 5, 10); got != strings.Repeat("x", 10) {
		t.Errorf("cut inside a character: %q", got)
	}
}
