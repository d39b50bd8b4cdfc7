package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/jobspec"
	"outpost.dev/outpost/internal/mlyaml"
	"outpost.dev/outpost/internal/output"
)

func created(c *api.CreationContext) string {
	if c == nil || c.CreatedAt.IsZero() {
		return "-"
	}
	return c.CreatedAt.Local().Format(time.DateTime)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func jobTable(js ...api.Job) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "STATUS", "COMPUTE", "EXPERIMENT", "TYPE", "CREATED"}}
		for _, j := range js {
			t.Rows = append(t.Rows, []string{j.Name, j.Status, orDash(jobspec.ComputeName(j.Compute)), orDash(j.ExperimentName),
				orDash(j.Type), created(j.CreationContext)})
		}
		return t
	}
}

func jobListTable(js []api.Job, now time.Time) func() output.Table {
	return func() output.Table {
		t := output.Table{Header: []string{"NAME", "STATUS", "COMPUTE", "EXPERIMENT", "DURATION", "CREATED"}}
		for _, j := range js {
			t.Rows = append(t.Rows, []string{j.Name, j.Status, orDash(jobspec.ComputeName(j.Compute)), orDash(j.ExperimentName),
				duration(j, now), created(j.CreationContext)})
		}
		return t
	}
}

// duration is how long a job ran (runs, while it does).
func duration(j api.Job, now time.Time) string {
	if j.StartTime == nil {
		return "-"
	}
	end := now
	if j.EndTime != nil {
		end = *j.EndTime
	}
	if end.Before(*j.StartTime) {
		return "-"
	}
	return end.Sub(*j.StartTime).Round(time.Second).String()
}

// jobOverrides are the flags of job create that set a field of the
// document, applied after --set.
type jobOverrides struct {
	name, experiment, display, description string
}

// preparedJob is a job document ready to submit: local paths replaced by
// the URIs they will be uploaded to, checked as the workspace will check
// it (but for what needs the workspace's state).
type preparedJob struct {
	spec *api.JobSpec
	res  *resolver
	doc  *mlyaml.Doc
}

// prepareJob reads a job file and gets it ready to submit without sending
// anything: a document with a mistake uploads nothing.
func prepareJob(file string, sets []string, o jobOverrides, cwd string) (*preparedJob, error) {
	doc, m, err := loadDoc(file, sets)
	if err != nil {
		return nil, err
	}
	for field, v := range map[string]string{"name": o.name, "experiment_name": o.experiment, "display_name": o.display, "description": o.description} {
		if v != "" {
			m[field] = v
		}
	}
	if _, ok := m["experiment_name"]; !ok && cwd != "" {
		// As az: a job without an experiment is filed under the name of
		// the folder it was submitted from.
		m["experiment_name"] = filepath.Base(cwd)
	}
	if err := unsupportedJobType(m); err != nil {
		return nil, explain(doc, err)
	}
	// The document as written first: a misspelt field is reported as such
	// before any file it names is read.
	if _, err := decodeJob(m); err != nil {
		return nil, explain(doc, err)
	}
	r := &resolver{loadYAML: loadYAMLFile}
	if err := r.job(m, doc.Dir()); err != nil {
		return nil, explain(doc, err)
	}
	spec, err := decodeJob(m)
	if err != nil {
		return nil, explain(doc, err)
	}
	if spec.Name == "" {
		spec.Name = jobspec.GenerateName()
	}
	// Default and Validate work on a copy: the workspace fills in its own
	// defaults (the default compute among them) from what was written.
	check, err := decodeJob(m)
	if err != nil {
		return nil, explain(doc, err)
	}
	check.Name = spec.Name
	jobspec.Default(check)
	if err := jobspec.Validate(check); err != nil {
		return nil, explain(doc, err)
	}
	return &preparedJob{spec: spec, res: r, doc: doc}, nil
}

func decodeJob(m map[string]any) (*api.JobSpec, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return jobspec.Decode(data)
}

// submitJob uploads what the job needs and creates it.
func submitJob(ctx context.Context, ws *client.Client, p wsPath, pj *preparedJob, progress io.Writer) (api.Job, error) {
	var job api.Job
	if err := pj.res.upload(ctx, artifactsClient(ws, p, progress), progress); err != nil {
		return job, err
	}
	err := ws.Do(ctx, "PUT", p.job(pj.spec.Name), pj.spec, &job)
	var se *client.StatusError
	if errors.As(err, &se) && pj.doc != nil {
		// The workspace names the fields it refuses, one problem a line:
		// point each at its line of the file, as local checks do.
		body := se.Body
		body.Message = explainLines(pj.doc, body.Message)
		return job, &client.StatusError{Code: se.Code, Body: body}
	}
	return job, err
}

var fieldPathRE = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$.\[\]-]*$`)

// explainLines puts "file, line N: " before each line of msg that starts
// with a field of doc ("inputs.x.path: ...").
func explainLines(doc *mlyaml.Doc, msg string) string {
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		field, _, ok := strings.Cut(l, ": ")
		if !ok || !fieldPathRE.MatchString(field) {
			continue
		}
		if n := doc.Line(field); n > 0 {
			lines[i] = fmt.Sprintf("%s, line %d: %s", doc.File(), n, l)
		}
	}
	return strings.Join(lines, "\n")
}

// jobPatch makes the body of `job update` from --set and --remove: only
// tags, properties, display_name and description change after submission.
func jobPatch(sets, removes []string) (map[string]any, error) {
	const allowed = "tags.KEY, properties.KEY, display_name and description"
	patch := map[string]any{}
	sub := func(field string) map[string]any {
		m, ok := patch[field].(map[string]any)
		if !ok {
			m = map[string]any{}
			patch[field] = m
		}
		return m
	}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want FIELD=VALUE, where FIELD is %s", s, allowed)
		}
		switch {
		case k == "display_name" || k == "description":
			patch[k] = v
		case strings.HasPrefix(k, "tags.") && len(k) > len("tags."):
			sub("tags")[strings.TrimPrefix(k, "tags.")] = v
		case strings.HasPrefix(k, "properties.") && len(k) > len("properties."):
			sub("properties")[strings.TrimPrefix(k, "properties.")] = v
		case k == "tags" || k == "properties":
			var m map[string]string
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				return nil, fmt.Errorf("--set %s: want a JSON object of strings, e.g. %s='{\"k\": \"v\"}', or %s.KEY=VALUE", s, k, k)
			}
			for mk, mv := range m {
				sub(k)[mk] = mv
			}
		default:
			return nil, fmt.Errorf("--set %s: %s of a job cannot be changed after it is submitted; update sets %s", s, k, allowed)
		}
	}
	for _, k := range removes {
		switch {
		case strings.HasPrefix(k, "tags.") && len(k) > len("tags."):
			sub("tags")[strings.TrimPrefix(k, "tags.")] = nil
		case strings.HasPrefix(k, "properties.") && len(k) > len("properties."):
			sub("properties")[strings.TrimPrefix(k, "properties.")] = nil
		case k == "display_name" || k == "description":
			patch[k] = ""
		default:
			return nil, fmt.Errorf("--remove %s: want tags.KEY, properties.KEY, display_name or description", k)
		}
	}
	if len(patch) == 0 {
		return nil, errors.New("nothing to update: give --set tags.KEY=VALUE, --set display_name=..., --set description=... or --remove tags.KEY")
	}
	return patch, nil
}

// downloadItem is a datastore folder (or file) job download fetches.
type downloadItem struct {
	What string // for messages
	URI  string
	Dest string
}

// planDownload says what `job download` fetches where: the artifacts
// (./outputs) into DEST/artifacts/outputs, a named output O into
// DEST/named-outputs/O; with all, both and every named output (the logs
// come apart, into DEST/artifacts/user_logs).
func planDownload(j api.Job, all bool, outputName, dest string) ([]downloadItem, error) {
	arts := downloadItem{What: "artifacts (./outputs)", URI: jobspec.ArtifactsURI(j.Name), Dest: filepath.Join(dest, "artifacts", "outputs")}
	named := func(o string) downloadItem {
		uri := jobspec.DefaultOutputURI(j.Name, o)
		if out := j.Outputs[o]; out != nil && out.Path != "" {
			uri = jobspec.ResolveOutputPath(out.Path, j.Name, o)
		}
		return downloadItem{What: "output " + o, URI: uri, Dest: filepath.Join(dest, "named-outputs", o)}
	}
	switch {
	case all:
		items := []downloadItem{arts}
		for _, o := range slices.Sorted(maps.Keys(j.Outputs)) {
			items = append(items, named(o))
		}
		return items, nil
	case outputName == "" || outputName == "artifacts" || outputName == "default":
		return []downloadItem{arts}, nil
	}
	if _, ok := j.Outputs[outputName]; !ok {
		names := append([]string{"artifacts (the default)"}, slices.Sorted(maps.Keys(j.Outputs))...)
		return nil, fmt.Errorf("--output-name %s: job %s has no such output; its outputs: %s", outputName, j.Name, strings.Join(names, ", "))
	}
	return []downloadItem{named(outputName)}, nil
}

// downloadLogs writes a job's log files under dir (user_logs/... as the
// workspace names them), reading them through the logs API from offset 0.
func downloadLogs(ctx context.Context, ws *client.Client, p wsPath, name, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	offsets := map[string]int64{}
	for {
		var from []string
		for _, f := range slices.Sorted(maps.Keys(offsets)) {
			from = append(from, f+":"+strconv.FormatInt(offsets[f], 10))
		}
		var logs api.JobLogs
		if err := ws.Do(ctx, "GET", p.jobLogs(name, strings.Join(from, ","), 0), nil, &logs); err != nil {
			return 0, err
		}
		progressed := false
		for _, c := range logs.Chunks {
			if err := artifacts.CheckPath(c.File); err != nil {
				return 0, fmt.Errorf("log file %q: refused: %w", c.File, err)
			}
			f, ok := files[c.File]
			if !ok {
				if d := filepath.Dir(filepath.FromSlash(c.File)); d != "." {
					if err := root.MkdirAll(d, 0o755); err != nil {
						return 0, err
					}
				}
				f, err = root.OpenFile(filepath.FromSlash(c.File), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
				if err != nil {
					return 0, err
				}
				files[c.File] = f
			}
			if len(c.Data) == 0 {
				offsets[c.File] = max(offsets[c.File], c.Offset)
				continue
			}
			if _, err := f.WriteAt(c.Data, c.Offset); err != nil {
				return 0, err
			}
			offsets[c.File] = max(offsets[c.File], c.Offset+int64(len(c.Data)))
			progressed = true
		}
		if !progressed {
			break
		}
	}
	for file, f := range files {
		if err := f.Close(); err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		delete(files, file)
	}
	return len(offsets), nil
}

func mlJobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Submit and follow command jobs on attached compute"}
	cmd.AddCommand(jobCreateCmd(), jobShowCmd(), jobListCmd(), jobUpdateCmd(), jobCancelCmd(), jobStreamCmd(), jobDownloadCmd(), jobMetricsCmd())
	return cmd
}

func nameFlag(c *cobra.Command, v *string, what string) {
	c.Flags().StringVarP(v, "name", "n", "", what)
	_ = c.MarkFlagRequired("name")
}

func jobCreateCmd() *cobra.Command {
	c := &cobra.Command{Use: "create", Short: "Submit a job from a YAML file (Azure ML CLI v2 command job)", Args: cobra.NoArgs,
		Long: "Submit a job from a YAML file (Azure ML CLI v2 command job).\n\n" +
			"Local paths (code, inputs, environment files) are relative to the file's folder: the code folder and\n" +
			"local inputs are uploaded to the workspace's datastore (once: unchanged content is reused) and replaced by\n" +
			"their azureml:// URIs. The code folder honours .amlignore (else .gitignore) and may hold up to 300 MiB."}
	var w wsFlags
	w.add(c)
	var file string
	var sets []string
	var o jobOverrides
	var stream, web bool
	c.Flags().StringVarP(&file, "file", "f", "", "the job's YAML file")
	c.Flags().BoolVarP(&web, "web", "e", false, "print the job's web view on stderr (there is no browser to open)")
	_ = c.MarkFlagRequired("file")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a field of the file: --set a.b=value (repeatable; several may follow one flag)")
	c.Flags().StringVarP(&o.name, "name", "n", "", "the job's name (default: the file's, else a generated one)")
	c.Flags().StringVar(&o.experiment, "experiment-name", "", "the job's experiment (default: the file's, else the name of the current folder)")
	c.Flags().StringVar(&o.display, "display-name", "", "the job's display name")
	c.Flags().StringVarP(&o.description, "description", "d", "", "the job's description")
	c.Flags().BoolVarP(&stream, "stream", "s", false, "follow the job's logs until it ends, as outpost ml job stream does")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		cwd, err := os.Getwd()
		if err != nil {
			cwd = ""
		}
		pj, err := prepareJob(file, sets, o, cwd)
		if err != nil {
			return err
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		p := w.path()
		job, err := submitJob(cmd.Context(), ws, p, pj, cmd.ErrOrStderr())
		if err != nil {
			return checkWith(err, "outpost ml job show"+w.ids(pj.spec.Name))
		}
		if web {
			fmt.Fprintf(cmd.ErrOrStderr(), "Web View: %s\n", studio(job))
		}
		if !stream {
			return printResult(cmd, *out, job, jobTable(job))
		}
		return streamJob(cmd.Context(), ws, p, job.Name, cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return c
}

func jobShowCmd() *cobra.Command {
	c := &cobra.Command{Use: "show", Short: "Show a job and its state", Args: cobra.NoArgs}
	var w wsFlags
	var name string
	w.add(c)
	nameFlag(c, &name, "job name")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return fetchAndPrint(cmd, *out, w.path().job(name), func(j api.Job) func() output.Table { return jobTable(j) })
	}
	return c
}

func jobListCmd() *cobra.Command {
	c := &cobra.Command{Use: "list", Short: "List jobs, newest first", Args: cobra.NoArgs}
	var w wsFlags
	w.add(c)
	maxResults := c.Flags().IntP("max-results", "r", 0, "list at most this many jobs (0: all)")
	parent := c.Flags().StringP("parent-job-name", "p", "", "list the child jobs of a pipeline job (Outpost runs no pipelines: none)")
	c.Flags().BoolP("all-results", "a", false, "list all jobs (the default)")
	c.Flags().Bool("include-archived", false, "accepted for compatibility: no job is archived")
	c.Flags().Bool("archived-only", false, "accepted for compatibility: no job is archived, so nothing is listed")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if *maxResults < 0 {
			return fmt.Errorf("--max-results %d: want 0 (all) or more", *maxResults)
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		jobs := []api.Job{}
		switch archived, _ := cmd.Flags().GetBool("archived-only"); {
		case *parent != "":
			// A parent must exist; its children do not, as every job is a
			// command job.
			if err := ws.Do(cmd.Context(), "GET", w.path().job(*parent), nil, nil); err != nil {
				return err
			}
		case archived:
		default:
			if err := ws.Do(cmd.Context(), "GET", w.path().jobs(), nil, &jobs); err != nil {
				return err
			}
		}
		if *maxResults > 0 && len(jobs) > *maxResults {
			jobs = jobs[:*maxResults]
		}
		return printResult(cmd, *out, jobs, jobListTable(jobs, time.Now()))
	}
	return c
}

func jobUpdateCmd() *cobra.Command {
	c := &cobra.Command{Use: "update", Short: "Change a job's tags, properties, display name or description", Args: cobra.NoArgs}
	var w wsFlags
	var name string
	var sets, removes []string
	w.add(c)
	nameFlag(c, &name, "job name")
	c.Flags().StringArrayVar(&sets, "set", nil, "tags.KEY=VALUE, properties.KEY=VALUE, display_name=... or description=... (repeatable)")
	c.Flags().StringArrayVar(&removes, "remove", nil, "tags.KEY or properties.KEY to remove (repeatable)")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		patch, err := jobPatch(sets, removes)
		if err != nil {
			return err
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		var job api.Job
		if err := ws.Do(cmd.Context(), "PATCH", w.path().job(name), patch, &job); err != nil {
			return checkWith(err, "outpost ml job show"+w.ids(name))
		}
		return printResult(cmd, *out, job, jobTable(job))
	}
	return c
}

func jobCancelCmd() *cobra.Command {
	c := &cobra.Command{Use: "cancel", Short: "Cancel a job: its pods are ended", Args: cobra.NoArgs}
	var w wsFlags
	var name string
	w.add(c)
	nameFlag(c, &name, "job name")
	c.Flags().Bool("no-wait", false, "accepted for compatibility: cancel returns once the cancellation is recorded")
	out := outputFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		var job api.Job
		if err := ws.Do(cmd.Context(), "POST", w.path().job(name)+"/cancel", nil, &job); err != nil {
			return checkWith(err, "outpost ml job show"+w.ids(name))
		}
		return printResult(cmd, *out, job, jobTable(job))
	}
	return c
}

func jobStreamCmd() *cobra.Command {
	c := &cobra.Command{Use: "stream", Short: "Follow a job's logs until it ends (exit 0 when it Completed)", Args: cobra.NoArgs,
		Long: "Follow a job's logs until it ends. State changes go to stderr, the logs to stdout.\n" +
			"Exits 0 when the job Completed and 1 with the reason when it Failed or was Canceled.\n" +
			"Ctrl-C stops following; the job goes on."}
	var w wsFlags
	var name string
	w.add(c)
	nameFlag(c, &name, "job name")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := connect()
		if err != nil {
			return err
		}
		return streamJob(cmd.Context(), ws, w.path(), name, cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return c
}

func jobDownloadCmd() *cobra.Command {
	c := &cobra.Command{Use: "download", Short: "Download a job's artifacts (./outputs), outputs and logs", Args: cobra.NoArgs,
		Long: "Download a job's files. Without flags: its artifacts (what it wrote to ./outputs) into\n" +
			"DEST/artifacts/outputs. --output-name O: the named output O into DEST/named-outputs/O.\n" +
			"--all: the artifacts, every named output and the logs (DEST/artifacts/user_logs)."}
	var w wsFlags
	var name, outputName, dest string
	var all bool
	w.add(c)
	nameFlag(c, &name, "job name")
	c.Flags().BoolVar(&all, "all", false, "download the artifacts, every named output and the logs")
	c.Flags().StringVar(&outputName, "output-name", "", "download this named output (artifacts: the default output)")
	c.Flags().StringVarP(&dest, "download-path", "p", ".", "folder to download into")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if all && outputName != "" {
			return errors.New("--all downloads every output: give --all or --output-name, not both")
		}
		ws, err := connect()
		if err != nil {
			return err
		}
		ctx, p, stderr := cmd.Context(), w.path(), cmd.ErrOrStderr()
		var job api.Job
		if err := ws.Do(ctx, "GET", p.job(name), nil, &job); err != nil {
			return err
		}
		items, err := planDownload(job, all, outputName, dest)
		if err != nil {
			return err
		}
		if !api.JobTerminal(job.Status) {
			fmt.Fprintf(stderr, "job %s is %s: downloading what is there so far\n", name, job.Status)
		}
		ac := artifactsClient(ws, p, stderr)
		for _, it := range items {
			ds, path, err := artifacts.ParseURI(it.URI)
			if err != nil {
				fmt.Fprintf(stderr, "%s: not in a workspace datastore (%s), skipped\n", it.What, it.URI)
				continue
			}
			n, err := ac.Download(ctx, ds, path, it.Dest)
			switch {
			case artifacts.IsNotFound(err):
				fmt.Fprintf(stderr, "%s: nothing to download (%s is empty)\n", it.What, it.URI)
			case err != nil:
				return fmt.Errorf("downloading %s: %w", it.What, err)
			default:
				fmt.Fprintf(stderr, "%s: %d %s into %s\n", it.What, n, plural(n, "file", "files"), it.Dest)
			}
		}
		if all {
			logs := filepath.Join(dest, "artifacts")
			n, err := downloadLogs(ctx, ws, p, name, logs)
			if err != nil {
				return fmt.Errorf("downloading the logs: %w", err)
			}
			fmt.Fprintf(stderr, "logs: %d %s into %s\n", n, plural(n, "file", "files"), filepath.Join(logs, "user_logs"))
		}
		return nil
	}
	return c
}
