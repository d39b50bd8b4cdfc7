package scoring

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/mlyaml"
)

const exampleDir = "../../examples/endpoints"

// sklearnPython is a Python that has scikit-learn: the example's model
// needs it (Debian's python3-sklearn on the development machines).
func sklearnPython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{os.Getenv("PATH"), "/usr/bin"} {
		py, err := findPython(p)
		if err != nil {
			continue
		}
		tried = append(tried, py)
		if exec.Command(py, "-c", "import sklearn, numpy").Run() == nil {
			return py
		}
	}
	t.Skipf("no Python with scikit-learn and numpy (tried %v): install python3-sklearn to run the example", tried)
	return ""
}

// The example's score.py, on a model its train.py makes, served by the
// scoring server as a deployment's instance serves it.
func TestExampleScoreScript(t *testing.T) {
	python := sklearnPython(t)
	modelDir := t.TempDir() // AZUREML_MODEL_DIR
	out, err := exec.Command(python, filepath.Join(exampleDir, "train.py"), "--model-dir", filepath.Join(modelDir, "model")).CombinedOutput()
	if err != nil {
		t.Fatalf("train.py: %v\n%s", err, out)
	}
	script, err := os.ReadFile(filepath.Join(exampleDir, "onlinescoring", "score.py"))
	if err != nil {
		t.Fatal(err)
	}
	s := startPy(t, python, string(script), []string{"AZUREML_MODEL_DIR=" + modelDir})
	s.waitHealthy()

	request, err := os.ReadFile(filepath.Join(exampleDir, "sample-request.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.do("POST", "/score", string(request))
	var predictions []float64
	if r.status != 200 || json.Unmarshal([]byte(r.body), &predictions) != nil || len(predictions) != 2 {
		t.Fatalf("POST /score sample-request.json = %d %q, want 200 and a list of 2 predictions", r.status, r.body)
	}
	if predictions[0] == predictions[1] {
		t.Errorf("predictions %v: the same for two different rows", predictions)
	}
	if r := s.do("POST", "/score", `{"data": [[1, 2, 3]]}`); r.status != 500 || !strings.Contains(r.body, "want {\"data\": [[10 numbers], ...]}") {
		t.Errorf("a row of 3 numbers = %d %q, want 500 saying what run() takes", r.status, r.body)
	}
	if r := s.do("POST", "/score", `not json`); r.status != 500 || !strings.Contains(r.body, "JSONDecodeError") {
		t.Errorf("a body that is not JSON = %d %q, want 500 with the JSON error", r.status, r.body)
	}
	if !strings.Contains(s.out.String(), "loaded the model from "+filepath.Join(modelDir, "model", "sklearn_regression_model.pkl")) {
		t.Errorf("init() did not load the model from AZUREML_MODEL_DIR/model/:\n%s", s.out)
	}
}

// The example's YAML files are Azure ML CLI v2 documents of the shapes
// the workspace takes, and what they name is there.
func TestExampleFiles(t *testing.T) {
	decode := func(file string, v any) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(exampleDir, file))
		if err != nil {
			t.Fatal(err)
		}
		d, err := mlyaml.Load(file, data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		js, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	var e api.OnlineEndpoint
	decode("endpoint.yml", &e)
	// The compute the quickstart attaches.
	quickstart, err := os.ReadFile("../../scripts/quickstart.sh")
	if err != nil {
		t.Fatal(err)
	}
	if e.AuthMode != "key" || !strings.HasPrefix(e.Compute, "azureml:") || !strings.Contains(string(quickstart), "--name "+strings.TrimPrefix(e.Compute, "azureml:")) {
		t.Errorf("endpoint.yml: auth_mode %q, compute %q: want key and the quickstart's compute", e.AuthMode, e.Compute)
	}
	for _, file := range []string{"blue-deployment.yml", "green-deployment.yml"} {
		var d api.OnlineDeployment
		decode(file, &d)
		if d.EndpointName != e.Name || d.Model == nil || d.Model.Inline == nil || d.CodeConfiguration == nil || d.InstanceType != "defaultinstancetype" || d.InstanceCount != 1 || d.RequestSettings == nil {
			t.Errorf("%s = %+v: want endpoint %s, an inline model, code, defaultinstancetype, 1 instance, request settings", file, d, e.Name)
			continue
		}
		if d.Model.Inline.Path != "./model/" {
			t.Errorf("%s: model path %q, want ./model/ (train.py's output)", file, d.Model.Inline.Path)
		}
		if _, err := os.Stat(filepath.Join(exampleDir, d.CodeConfiguration.Code, d.CodeConfiguration.ScoringScript)); err != nil {
			t.Errorf("%s: scoring script: %v", file, err)
		}
	}
}
