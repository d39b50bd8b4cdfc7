// Package scoring is what runs in an online deployment's instances.
//
// `outpost score serve` is the main container's command: it fetches the
// deployment's spec from the workspace's deployment-run API (api/deployrun.go)
// with the deployment's credential, downloads the model (every file checked
// against its digest) to <root>/azureml-models/<name>/<version>/, which
// becomes AZUREML_MODEL_DIR, and the code folder to <root>/code/, then runs
// the embedded Python server (server.py: Azure ML's azmlinfsrv routes, the
// standard library only) on the user's scoring script with the image's
// Python. What the server prints goes to the container's log and to the
// workspace (POST /logs/<instance>), where `online-deployment get-logs`
// reads it. init() raising leaves its traceback as the container's
// termination message.
//
// `outpost score fetch` is the init container of a bring-your-own-container
// deployment: it puts the model in the shared volume and exits.
package scoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"outpost.dev/outpost/api"
	v1 "outpost.dev/outpost/api/inference/v1alpha1"
	training "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/jobrunner"
	"outpost.dev/outpost/internal/wrapper"
)

// DefaultRoot is where an instance keeps the deployment's files: Azure
// ML's, so that AZUREML_MODEL_DIR reads as it does there
// (/var/azureml-app/azureml-models/<name>/<version>). The pod mounts a
// volume here.
const DefaultRoot = "/var/azureml-app"

// EnvPodName names the instance (its log in the workspace); the host name
// when it is not set.
const EnvPodName = "POD_NAME"

// EnvTerminationLog replaces /dev/termination-log (tests), as for jobs.
const EnvTerminationLog = jobrunner.EnvTerminationLog

const defaultTerminationLog = "/dev/termination-log"

// ExitInitFailed is the exit code of `score serve` (server.py's
// EXIT_INIT_FAILED) when the scoring script did not load or init() raised:
// the termination message holds the traceback, which the inference
// operator reports as the deployment's InitFailed.
const ExitInitFailed = 3

// exitCanceled is the exit code after SIGTERM before the server ran.
const exitCanceled = 128 + int(syscall.SIGTERM)

// Log shipping bounds once the server has ended.
var (
	flushOnSignal = 10 * time.Second // the pod is being deleted: its grace period runs
	flushOnExit   = 30 * time.Second
	drainTimeout  = 2 * time.Second // for output held by what the server left running
)

// credentialEnv are the variables the scoring script never sees.
var credentialEnv = []string{v1.EnvDeploymentURL, v1.EnvDeploymentToken, v1.EnvDeploymentCA, training.EnvProxy, training.EnvNoProxy}

// Options of `score serve`.
type Options struct {
	Root string // DefaultRoot when empty
	Host string // 0.0.0.0 when empty
	Port int    // v1alpha1.ScoringPort when 0; -1: any free port (tests)
}

// config is what the environment gives the wrapper.
type config struct {
	url      string // the deployment-run API base, no trailing slash
	token    string
	http     *http.Client
	termPath string
}

// instanceRE is what an instance's log may be called: a pod's name (a DNS
// subdomain), as the workspace takes it.
var instanceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// loadConfig reads the credentials; every error names the variable, never
// a secret's value.
func loadConfig(env func(string) string) (*config, error) {
	c := &config{termPath: env(EnvTerminationLog)}
	if c.termPath == "" {
		c.termPath = defaultTerminationLog
	}
	var missing []string
	for _, k := range []string{v1.EnvDeploymentURL, v1.EnvDeploymentToken, v1.EnvDeploymentCA} {
		if strings.TrimSpace(env(k)) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing environment variable(s) %s: a deployment's pod gets them from its credentials Secret", strings.Join(missing, ", "))
	}
	u, err := url.Parse(env(v1.EnvDeploymentURL))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s: want an https:// URL of the deployment-run API, with no user, query or fragment", v1.EnvDeploymentURL)
	}
	c.url = strings.TrimRight(u.String(), "/")
	c.token = strings.TrimSpace(env(v1.EnvDeploymentToken))
	if strings.ContainsAny(c.token, " \t\r\n") {
		return nil, fmt.Errorf("%s: want a single token without spaces", v1.EnvDeploymentToken)
	}
	// Checked here so that the error names this variable (the shared
	// client's would name the job's).
	ca := []byte(env(v1.EnvDeploymentCA))
	if !certPool(ca) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", v1.EnvDeploymentCA)
	}
	if c.http, err = jobrunner.HTTPClient(ca, env(training.EnvProxy), env(training.EnvNoProxy)); err != nil {
		return nil, err
	}
	return c, nil
}

// instanceName is this instance's name: the pod's.
func instanceName(env func(string) string) (string, error) {
	name := strings.TrimSpace(env(EnvPodName))
	what := EnvPodName
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("%s is not set and the host name is unknown: %w", EnvPodName, err)
		}
		// Outside a pod (a host name may have capitals): as a pod's.
		name, what = strings.ToLower(h), "the host name"
	}
	if !instanceRE.MatchString(name) {
		return "", fmt.Errorf("%s %q: want a pod's name (lower-case letters, digits, '.' and '-')", what, name)
	}
	return name, nil
}

// runner is one run of `score serve` or `score fetch`.
type runner struct {
	mu       sync.Mutex
	stderr   io.Writer // its own messages
	termPath string
}

func (w *runner) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.Write(p)
}

func (w *runner) warn(format string, args ...any) {
	fmt.Fprintf(w, "outpost score: "+format+"\n", args...)
}

func (w *runner) terminate(msg string) {
	if err := jobrunner.WriteTermination(w.termPath, msg); err != nil {
		w.warn("writing the termination message: %v", err)
	}
}

// fail ends a run the wrapper could not carry out; a run cut short by
// SIGTERM is no failure of the deployment's.
func (w *runner) fail(ctx context.Context, err error) int {
	w.warn("%v", err)
	if ctx.Err() != nil {
		return exitCanceled
	}
	w.terminate(err.Error())
	return 1
}

// Serve runs `score serve` and returns its exit code: the Python server's,
// or 1 when the wrapper failed (the reason on stderr and in the
// termination message). env gives the settings (os.Getenv in a pod); the
// server gets environ less the credentials. SIGTERM and SIGINT stop the
// server gracefully.
func Serve(ctx context.Context, o Options, env func(string) string, environ func() []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	w := &runner{stderr: stderr, termPath: env(EnvTerminationLog)}
	if w.termPath == "" {
		w.termPath = defaultTerminationLog
	}
	// The server runs for days: the node's copy of this binary must stay
	// while it does (see wrapper.Hold).
	if err := wrapper.Hold(); err != nil {
		w.warn("%v", err)
	}
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.Host == "" {
		o.Host = "0.0.0.0"
	}
	switch {
	case o.Port == 0:
		o.Port = v1.ScoringPort
	case o.Port == -1:
		o.Port = 0
	case o.Port < 0 || o.Port > 65535:
		return w.fail(ctx, fmt.Errorf("port %d: want 1 to 65535", o.Port))
	}
	if !filepath.IsAbs(o.Root) {
		return w.fail(ctx, fmt.Errorf("root %q: want an absolute path", o.Root))
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return w.fail(ctx, err)
	}
	instance, err := instanceName(env)
	if err != nil {
		return w.fail(ctx, err)
	}

	// From here on the wrapper's messages (downloads, failures) are in the
	// instance's log as well.
	ship, err := jobrunner.ShipLog(ctx, cfg.url, cfg.token, cfg.http, o.Root, instance, w.warn)
	if err != nil {
		w.warn("the log goes to this container's output only: %v", err)
	} else {
		w.stderr = io.MultiWriter(stderr, ship)
	}
	code := serve(ctx, w, cfg, o, environ, stdout, ship)
	if ship != nil {
		deadline := time.Now().Add(flushOnExit)
		if ctx.Err() != nil {
			deadline = time.Now().Add(flushOnSignal)
		}
		// The log is done with: nothing more goes to it.
		w.mu.Lock()
		w.stderr = stderr
		w.mu.Unlock()
		if err := ship.Close(deadline); err != nil {
			w.warn("%v", err)
		}
	}
	return code
}

func serve(ctx context.Context, w *runner, cfg *config, o Options, environ func() []string, stdout io.Writer, ship *jobrunner.LogShipper) int {
	var run api.DeploymentRun
	if err := jobrunner.GetSpec(ctx, cfg.url, cfg.token, cfg.http, &run); err != nil {
		return w.fail(ctx, fmt.Errorf("the deployment's %w", err))
	}
	p, err := makePlan(&run, o.Root)
	if err != nil {
		return w.fail(ctx, err)
	}
	store := &artifacts.Client{HTTP: cfg.http, Base: cfg.url, Token: cfg.token, Progress: w, Label: "model"}
	if p.model != nil {
		if _, err := fetchModel(ctx, store, p.model); err != nil {
			return w.fail(ctx, err)
		}
	}
	codeDir := filepath.Join(o.Root, dirCode)
	store.Label = "code"
	if err := fetchCode(ctx, store, *p.code, p.script, codeDir); err != nil {
		return w.fail(ctx, err)
	}
	server, err := writeServer(o.Root)
	if err != nil {
		return w.fail(ctx, fmt.Errorf("writing the scoring server: %w", err))
	}
	python, err := findPython(pathOf(environ()))
	if err != nil {
		return w.fail(ctx, err)
	}
	name := run.Endpoint
	if name == "" {
		name = run.Name
	}
	args := []string{server,
		"--script", filepath.Join(codeDir, filepath.FromSlash(p.script)),
		"--code-dir", codeDir,
		"--host", o.Host,
		"--port", fmt.Sprint(o.Port),
		"--name", name,
		"--termination-log", w.termPath,
	}
	tail := &tailBuffer{}
	out := io.MultiWriter(stdout, tail)
	if ship != nil {
		out = io.MultiWriter(stdout, tail, ship)
	}
	if ctx.Err() != nil {
		return w.fail(ctx, fmt.Errorf("stopped before the scoring server started: %w", ctx.Err()))
	}
	w.warn("starting the scoring server: %s %s", python, p.script)
	code, err := runServer(ctx, python, args, codeDir, serverEnv(environ(), &run, p, codeDir), out)
	switch {
	case err != nil:
		return w.fail(ctx, fmt.Errorf("running the scoring server: %w", err))
	case code == 0, code == ExitInitFailed:
		// Ended by a signal, or init() failed and the server said why.
		return code
	case ctx.Err() != nil:
		w.warn("the scoring server exited with code %d after the signal", code)
		return code
	}
	msg := fmt.Sprintf("the scoring server exited with code %d", code)
	if end := lastLines(tail.bytes(), 20, 3<<10); end != "" {
		msg += ":\n" + end
	}
	w.warn("%s", msg)
	w.terminate(msg)
	return code
}

// Fetch runs `score fetch`: the model of the deployment into
// root/azureml-models/<name>/<version>/, whose path it prints. A
// deployment without a model fetches nothing.
func Fetch(ctx context.Context, root string, env func(string) string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	w := &runner{stderr: stderr, termPath: env(EnvTerminationLog)}
	if w.termPath == "" {
		w.termPath = defaultTerminationLog
	}
	if root == "" {
		root = DefaultRoot
	}
	if !filepath.IsAbs(root) {
		return w.fail(ctx, fmt.Errorf("root %q: want an absolute path", root))
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return w.fail(ctx, err)
	}
	var run api.DeploymentRun
	if err := jobrunner.GetSpec(ctx, cfg.url, cfg.token, cfg.http, &run); err != nil {
		return w.fail(ctx, fmt.Errorf("the deployment's %w", err))
	}
	m, err := makeModelPlan(&run, root)
	if err != nil {
		return w.fail(ctx, fmt.Errorf("the deployment's spec: %w", err))
	}
	if m == nil {
		w.warn("deployment %s has no model: nothing to fetch", run.Name)
		return 0
	}
	store := &artifacts.Client{HTTP: cfg.http, Base: cfg.url, Token: cfg.token, Progress: w, Label: "model"}
	if _, err := fetchModel(ctx, store, m); err != nil {
		return w.fail(ctx, err)
	}
	fmt.Fprintln(stdout, m.dir)
	return 0
}

// serverEnv is the server's environment: the pod's less the credentials,
// the deployment's environment_variables, then what Azure ML's inference
// server sets (which they cannot override).
func serverEnv(environ []string, run *api.DeploymentRun, p *plan, codeDir string) []string {
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || slices.Contains(credentialEnv, k) {
			continue
		}
		set(k, v)
	}
	// The log is a pipe: lines go out as they are printed.
	set("PYTHONUNBUFFERED", "1")
	for _, k := range slices.Sorted(maps.Keys(run.EnvironmentVariables)) {
		set(k, run.EnvironmentVariables[k])
	}
	set("PWD", codeDir)
	set("AML_APP_ROOT", codeDir)
	set("AZUREML_ENTRY_SCRIPT", p.script)
	if p.model != nil {
		set("AZUREML_MODEL_DIR", p.model.dir)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// pathOf is the PATH of an environment.
func pathOf(environ []string) string {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return path
}

var errNoPython = errors.New("neither python3 nor python is on the image's PATH: Outpost's scoring server needs Python 3.7 or newer in the environment's image (or give the environment an inference_config and a server of its own)")
