package scoring

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
)

// Layout under the root (Azure ML's /var/azureml-app).
const (
	dirModels = "azureml-models" // azureml-models/<name>/<version>/: AZUREML_MODEL_DIR
	dirCode   = "code"           // the code folder: the server's working directory
	dirServer = ".outpost"       // the embedded server
)

// segmentRE is what a model's name or version may be: each is a folder
// name of AZUREML_MODEL_DIR.
var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$`)

// location is a datastore path: a file, or a folder (ending in "/").
type location struct {
	ds, path string
}

// modelPlan is where a deployment's model comes from and goes.
type modelPlan struct {
	from location
	dir  string // AZUREML_MODEL_DIR
	dest string // where its files go: dir, or dir/<ModelFolder>
}

// plan is what a DeploymentRun asks of an instance, checked before
// anything is downloaded.
type plan struct {
	model  *modelPlan // nil: the deployment has no model
	code   *location  // nil: none (score fetch)
	script string     // relative to the code folder, slash-separated
}

// makeModelPlan checks the model part of a DeploymentRun.
func makeModelPlan(run *api.DeploymentRun, root string) (*modelPlan, error) {
	if run.ModelURI == "" {
		return nil, nil
	}
	var errs []error
	ds, p, err := artifacts.ParseURI(run.ModelURI)
	if err != nil {
		errs = append(errs, fmt.Errorf("model: %w", err))
	}
	for _, f := range []struct{ what, v string }{{"name", run.ModelName}, {"version", run.ModelVersion}} {
		if !segmentRE.MatchString(f.v) || f.v == "." || f.v == ".." {
			errs = append(errs, fmt.Errorf("model %s %q: want letters, digits, '_', '.' and '-' (it names a folder of AZUREML_MODEL_DIR)", f.what, f.v))
		}
	}
	if run.ModelFolder != "" {
		if err := artifacts.CheckPath(strings.TrimSuffix(run.ModelFolder, "/")); err != nil {
			errs = append(errs, fmt.Errorf("model folder: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m := &modelPlan{from: location{ds, p}, dir: filepath.Join(root, dirModels, run.ModelName, run.ModelVersion)}
	m.dest = m.dir
	if run.ModelFolder != "" {
		m.dest = filepath.Join(m.dir, filepath.FromSlash(strings.TrimSuffix(run.ModelFolder, "/")))
	}
	return m, nil
}

// makePlan checks a DeploymentRun for `score serve`: a model (optional),
// the code folder and the scoring script in it.
func makePlan(run *api.DeploymentRun, root string) (*plan, error) {
	var errs []error
	m, err := makeModelPlan(run, root)
	if err != nil {
		errs = append(errs, err)
	}
	p := &plan{model: m, script: run.ScoringScript}
	switch {
	case run.Code == "":
		errs = append(errs, errors.New("the deployment has no code_configuration.code: Outpost's scoring server runs a scoring script (a deployment without one needs its own container, environment.inference_config)"))
	default:
		ds, cp, err := artifacts.ParseURI(run.Code)
		if err != nil {
			errs = append(errs, fmt.Errorf("code: %w", err))
		}
		p.code = &location{ds, cp}
	}
	switch {
	case run.ScoringScript == "":
		errs = append(errs, errors.New("the deployment has no code_configuration.scoring_script"))
	case artifacts.CheckPath(run.ScoringScript) != nil:
		errs = append(errs, fmt.Errorf("scoring script %q: want a path relative to the code folder, without . or .. segments", run.ScoringScript))
	case path.Ext(run.ScoringScript) != ".py":
		errs = append(errs, fmt.Errorf("scoring script %q: want a Python file (.py)", run.ScoringScript))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("the deployment's spec: %w", errors.Join(errs...))
	}
	return p, nil
}
