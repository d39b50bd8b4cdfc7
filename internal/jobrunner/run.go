// Package jobrunner is the wrapper that runs in every pod of a training job
// (`outpost job run`): it fetches the job's spec from the workspace's
// job-run API, downloads the code and the inputs, runs the command once per
// local process, sends the processes' output to the workspace as it comes,
// uploads the outputs, and leaves a termination message saying how it
// ended. `outpost job install` puts the binary where the job's image can
// run it, whatever that image holds (see package wrapper).
//
// Outputs of a job of several instances: every instance uploads its own
// outputs folders and ./outputs to the same datastore paths, each as one
// commit, so that for a path written by more than one instance the last
// commit wins. Instance 0 alone reports the job's phases.
package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/wrapper"
)

// flushOnCancel bounds sending the rest of the logs once the job is
// cancelled: the pod is being deleted, and its grace period runs.
var flushOnCancel = 10 * time.Second

// exitCanceled is what the wrapper exits with when the job was cancelled
// before its command could say: a process ended by SIGTERM.
const exitCanceled = 128 + int(syscall.SIGTERM)

// Install is `outpost job install DST`: see wrapper.Install.
func Install(dst string) error { return wrapper.Install(dst, os.Stderr) }

// Run runs the job of this pod and returns the exit code: the command's
// (the first process to fail, when there are several), or 1 when the
// wrapper itself failed (the reason on stderr and in the termination
// message). env gives the wrapper's settings (os.Getenv in a pod); the
// processes get the wrapper's own environment, less the job's credentials.
// SIGTERM and SIGINT, like ctx ending, stop the processes.
func Run(ctx context.Context, env func(string) string, stdout, stderr io.Writer) int {
	if err := wrapper.Hold(); err != nil {
		// Only an install of another outpost binary on this node, while
		// the job runs, could then remove the wrapper's copy.
		fmt.Fprintf(stderr, "outpost job run: %v\n", err)
	}
	return run(ctx, env, os.Environ, stdout, stderr)
}

// job is one run of the wrapper.
type job struct {
	stderr   io.Writer
	termPath string
	cfg      *config
	api      *jobAPI
}

func run(ctx context.Context, env func(string) string, environ func() []string, stdout, stderr io.Writer) int {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	stderr = &lockedWriter{w: stderr}
	j := &job{stderr: stderr, termPath: env(EnvTerminationLog)}
	if j.termPath == "" {
		j.termPath = defaultTerminationLog
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return j.fail(err)
	}
	j.cfg = cfg
	j.api = &jobAPI{base: cfg.url, token: cfg.token, http: cfg.http}
	store := &artifacts.Client{HTTP: cfg.http, Base: cfg.url, Token: cfg.token, Progress: stderr}

	spec, err := j.api.spec(ctx)
	if err != nil {
		return j.failOrCanceled(ctx, err)
	}
	plan, err := makePlan(spec, cfg.root)
	if err != nil {
		return j.fail(err)
	}
	j.phase(ctx, api.JobPreparing)
	inputs, err := fetch(ctx, store, plan, cfg.root)
	if err != nil {
		return j.failOrCanceled(ctx, err)
	}
	outputs, err := makeOutputs(plan, cfg.root)
	if err != nil {
		return j.fail(fmt.Errorf("making the output folders: %w", err))
	}
	command, err := jobspec.Substitute(spec.Command, inputs, outputs)
	if err != nil {
		return j.fail(fmt.Errorf("the job's command: %w", err))
	}
	shell := lookPath("bash", cfg.path)
	if shell == "" {
		shell = lookPath("sh", cfg.path)
	}
	if shell == "" {
		return j.fail(fmt.Errorf("neither bash nor sh is on the image's PATH (%s)", cfg.path))
	}
	pathList, err := shims(cfg.root, cfg.path)
	if err != nil {
		return j.fail(fmt.Errorf("making the python shims: %w", err))
	}
	if err := installMetrics(cfg.root); err != nil {
		return j.fail(err)
	}

	if cfg.plugin.Name() == "mpi" {
		// mpirun starts the processes, across the instances (mpi.go).
		env := processEnv(baseEnv(environ(), pathList), spec, inputs, outputs, cfg, 0)
		return j.runMPI(ctx, &mpiRun{shell: shell, command: command, env: env, store: store, plan: plan, stdout: stdout})
	}

	con := &console{w: stdout, warn: j.warn}
	var procs []*process
	var logs []*shipper
	var lines []*lineWriter
	var tails []*tailBuffer
	closeLogs := func(deadline time.Time) error {
		for _, l := range lines {
			l.close()
		}
		var errs []error
		for _, s := range logs {
			errs = append(errs, s.close(deadline))
		}
		return errors.Join(errs...)
	}
	base := baseEnv(environ(), pathList)
	for local := range cfg.perInstance {
		rank := cfg.world.Rank(cfg.instance, local)
		file := "user_logs/std_log.txt"
		if cfg.world.Size() > 1 {
			file = fmt.Sprintf("user_logs/std_log_process_%d.txt", rank)
		}
		s, err := newShipper(j.api, cfg.root, file, j.warn)
		if err != nil {
			// Nothing ran yet: what was opened has nothing to send.
			if cerr := closeLogs(time.Now()); cerr != nil {
				j.warn("%v", cerr)
			}
			return j.fail(fmt.Errorf("opening the log %s: %w", file, err))
		}
		lw := &lineWriter{out: con}
		tb := &tailBuffer{}
		logs, lines, tails = append(logs, s), append(lines, lw), append(tails, tb)
		procs = append(procs, &process{
			rank: rank, local: local,
			env:  processEnv(base, spec, inputs, outputs, cfg, local),
			out:  io.MultiWriter(lw, s, tb),
			warn: stderr,
		})
	}

	metrics := newMetricShipper(j.api, filepath.Join(cfg.root, dirMetrics), j.warn)
	j.phase(ctx, api.JobRunning)
	res, startErr := runProcesses(ctx, shell, command, filepath.Join(cfg.root, dirWD), procs)

	deadline := time.Now().Add(retryWindow)
	if res.canceled {
		deadline = time.Now().Add(flushOnCancel)
	}
	// Every byte of output, and every metric, is in before the outputs
	// go: a pod that ends well has its logs, metrics and outputs in the
	// workspace.
	logErr := errors.Join(closeLogs(deadline), metrics.close(deadline))
	if startErr != nil {
		return j.fail(errors.Join(startErr, logErr))
	}
	code := 0
	if res.first >= 0 {
		code = res.codes[res.first]
	}
	if res.canceled {
		if logErr != nil {
			j.warn("%v", logErr)
		}
		if code == 0 {
			code = exitCanceled
		}
		j.terminate(fmt.Sprintf("canceled: the command was stopped (exit code %d)", code))
		return code
	}

	j.phase(ctx, api.JobFinalizing)
	// A failed command's outputs go too, as a mounted folder would keep
	// what it wrote.
	upErr := upload(ctx, store, plan, cfg.root)
	if code != 0 {
		for _, err := range []error{logErr, upErr} {
			if err != nil {
				j.warn("%v", err)
			}
		}
		j.terminate(failureMessage(code, tails[res.first].bytes()))
		return code
	}
	if err := errors.Join(logErr, upErr); err != nil {
		return j.fail(err)
	}
	return 0
}

// baseEnv is the pod's environment as the command gets it: without the
// job's credentials, with pathList as PATH.
func baseEnv(environ []string, pathList string) *envList {
	e := &envList{vals: map[string]string{}}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		secret := false
		for _, c := range credentialEnv {
			secret = secret || k == c
		}
		if !secret {
			e.set(k, v)
		}
	}
	e.set("PATH", pathList)
	return e
}

// processEnv is process local's environment: the pod's, the job's
// environment_variables, then what Azure ML sets (which the job cannot
// override).
func processEnv(base *envList, spec *api.JobRun, inputs, outputs map[string]string, cfg *config, local int) []string {
	e := base.clone()
	for _, k := range slices.Sorted(maps.Keys(spec.EnvironmentVariables)) {
		e.set(k, spec.EnvironmentVariables[k])
	}
	// The pod's PWD is its image's working directory, not the command's.
	e.set("PWD", filepath.Join(cfg.root, dirWD))
	e.set("AZUREML_RUN_ID", spec.Name)
	e.set("AZUREML_ARM_RESOURCEGROUP", spec.ResourceGroup)
	e.set("AZUREML_ARM_WORKSPACE_NAME", spec.Workspace)
	e.set("AZUREML_EXPERIMENT_NAME", spec.ExperimentName)
	for _, k := range slices.Sorted(maps.Keys(inputs)) {
		e.set("AZURE_ML_INPUT_"+k, inputs[k])
	}
	for _, k := range slices.Sorted(maps.Keys(outputs)) {
		e.set("AZURE_ML_OUTPUT_"+k, outputs[k])
	}
	fw := cfg.plugin.ProcessEnv(cfg.world, cfg.instance, local)
	for _, k := range slices.Sorted(maps.Keys(fw)) {
		e.set(k, fw[k])
	}
	setMetricsEnv(e, cfg.root, cfg.world.Rank(cfg.instance, local))
	e.set("AZUREML_PROCESS_NAME", "rank_"+strconv.Itoa(cfg.world.Rank(cfg.instance, local)))
	return e.list()
}

// envList is an environment in order, a later value replacing an earlier.
type envList struct {
	keys []string
	vals map[string]string
}

func (e *envList) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) clone() *envList {
	c := &envList{keys: append([]string(nil), e.keys...), vals: make(map[string]string, len(e.vals))}
	for k, v := range e.vals {
		c.vals[k] = v
	}
	return c
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// phase reports progress (instance 0 only). A report that cannot be made
// does not stop the job: the workspace learns the end from the cluster.
func (j *job) phase(ctx context.Context, phase string) {
	if j.cfg.instance != 0 {
		return
	}
	if err := j.api.phase(ctx, phase, j.cfg.instance); err != nil {
		j.warn("%v", err)
	}
}

func (j *job) warn(format string, args ...any) {
	fmt.Fprintf(j.stderr, "outpost job: "+format+"\n", args...)
}

// fail ends a run that the wrapper could not carry out.
func (j *job) fail(err error) int {
	j.warn("%v", err)
	j.terminate(err.Error())
	return 1
}

// failOrCanceled tells a failure caused by the job being cancelled from one
// of its own.
func (j *job) failOrCanceled(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		j.warn("%v", err)
		j.terminate("canceled before the command started")
		return exitCanceled
	}
	return j.fail(err)
}

func (j *job) terminate(msg string) {
	if err := writeTermination(j.termPath, msg); err != nil {
		j.warn("writing the termination message: %v", err)
	}
}

// lockedWriter lets goroutines share a writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
