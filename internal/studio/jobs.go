package studio

import (
	"cmp"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
)

// Jobs: the list, and a job's page with its document as YAML, its state
// and queue reason, every log file followed live, its outputs to download,
// and cancel.

func (s *Studio) jobRoutes() {
	s.handle("GET "+wsPrefix+"jobs", page, s.jobsPage)
	s.handle("GET "+wsPrefix+"jobs/live", fragment, s.jobsLive)
	s.handle("GET "+wsPrefix+"jobs/{name}", page, s.jobPage)
	s.handle("GET "+wsPrefix+"jobs/{name}/live", fragment, s.jobLive)
	s.handle("GET "+wsPrefix+"jobs/{name}/logs", fragment, s.jobLogs)
	s.handle("GET "+wsPrefix+"jobs/{name}/files/{ds}/{path...}", page, s.jobFile)
	s.handle("POST "+wsPrefix+"jobs/{name}/cancel", action, s.cancelJob)
}

func (s *Studio) jobsPage(w http.ResponseWriter, r *http.Request, v *view) {
	s.showJobs(w, r, v, "jobs")
}

func (s *Studio) jobsLive(w http.ResponseWriter, r *http.Request, v *view) {
	s.showJobs(w, r, v, "jobs-table")
}

// jobRow is a job as the list shows it.
type jobRow struct {
	api.Job
	Compute  string
	Created  *time.Time
	Duration string
}

func rowOf(j api.Job, now time.Time) jobRow {
	row := jobRow{Job: j, Compute: jobspec.ComputeName(j.JobSpec.Compute), Duration: runTime(j, now)}
	if j.CreationContext != nil {
		row.Created = &j.CreationContext.CreatedAt
	}
	return row
}

// runTime is how long a job ran (runs, while it does); "" before it started.
func runTime(j api.Job, now time.Time) string {
	if j.StartTime == nil {
		return ""
	}
	return cmp.Or(j.EndTime, &now).Sub(*j.StartTime).Round(time.Second).String()
}

func (s *Studio) showJobs(w http.ResponseWriter, r *http.Request, v *view, tmpl string) {
	var js []api.Job
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "jobs"), nil, &js); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	now := time.Now()
	rows := make([]jobRow, len(js))
	for i, j := range js {
		rows[i] = rowOf(j, now)
	}
	v.Title, v.Section, v.Data = "Jobs", "jobs", rows
	s.render(w, http.StatusOK, tmpl, v)
}

// jobData is a job's page.
type jobData struct {
	jobRow
	Terminal bool
	YAML     string
	Logs     []logFile
	// LogsDone: every byte of every log is on the page and the job ended;
	// the script follows the logs until then.
	LogsDone bool
	Outputs  []outputFiles
	Metrics  metricsView
}

// logFile is one log file as far as the page shows it; Offset is where
// the script goes on reading.
type logFile struct {
	File   string
	Text   string
	Offset int64
}

// outputFiles are the files of one output of a job.
type outputFiles struct {
	Name, URI string
	Files     []outputFile
	Err       string // why they could not be listed
}

type outputFile struct {
	Path string // within the output
	Size int64
	Link string
}

func (s *Studio) jobPage(w http.ResponseWriter, r *http.Request, v *view) {
	d, err := s.jobState(r, v)
	if err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	doc, err := yaml.Marshal(d.Job)
	if err != nil {
		s.failAPI(w, r, v, fmt.Errorf("job %s as YAML: %w", d.Name, err))
		return
	}
	d.YAML = string(doc)
	var logs api.JobLogs
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "jobs", d.Name, "logs")+"?wait=0", nil, &logs); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	byFile := map[string]*logFile{}
	for _, c := range logs.Chunks {
		f := byFile[c.File]
		if f == nil {
			f = &logFile{File: c.File, Offset: c.Offset}
			byFile[c.File] = f
		}
		// The script goes on from the end of the last whole character, so
		// that one split by the answer's size limit is not shown broken.
		data := c.Data[:completeUTF8(c.Data)]
		f.Text += string(data)
		f.Offset = c.Offset + int64(len(data))
	}
	for _, name := range slices.Sorted(maps.Keys(byFile)) {
		d.Logs = append(d.Logs, *byFile[name])
	}
	d.LogsDone = logs.Done
	v.Title, v.Section, v.Data = "Job "+d.Name, "jobs", d
	s.render(w, http.StatusOK, "job", v)
}

// completeUTF8 is the length of b without a UTF-8 sequence cut at its end.
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

func (s *Studio) jobLive(w http.ResponseWriter, r *http.Request, v *view) {
	d, err := s.jobState(r, v)
	if err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	v.Data = d
	s.render(w, http.StatusOK, "job-state", v)
}

// jobState reads a job with its outputs.
func (s *Studio) jobState(r *http.Request, v *view) (*jobData, error) {
	var j api.Job
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "jobs", r.PathValue("name")), nil, &j); err != nil {
		return nil, err
	}
	d := &jobData{jobRow: rowOf(j, time.Now()), Terminal: api.JobTerminal(j.Status)}
	// Metrics that cannot be read leave the rest of the page as it is,
	// saying why.
	var m api.JobMetrics
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "jobs", j.Name, "metrics"), nil, &m); err != nil {
		d.Metrics.Err = err.Error()
	} else {
		d.Metrics = chartsOf(m)
	}
	for _, o := range outputsOf(j) {
		of := outputFiles{Name: o.name, URI: o.uri}
		if o.err != nil {
			of.Err = o.err.Error()
			d.Outputs = append(d.Outputs, of)
			continue
		}
		var files []api.FileInfo
		err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "datastores", o.ds, "files")+"?prefix="+url.QueryEscape(o.path), nil, &files)
		if err != nil {
			of.Err = err.Error()
		}
		for _, f := range files {
			rel, ok := o.contains(f.Path)
			if !ok {
				continue
			}
			link := v.Link("jobs", j.Name, "files", o.ds) + apiPath(strings.Split(f.Path, "/")...)
			of.Files = append(of.Files, outputFile{Path: rel, Size: f.Size, Link: link})
		}
		d.Outputs = append(d.Outputs, of)
	}
	return d, nil
}

// jobOutput is where one output of a job is kept.
type jobOutput struct {
	name, uri string
	ds, path  string
	err       error
}

// contains tells whether the datastore path p is the output (a file) or
// in it (a folder), and its path within.
func (o jobOutput) contains(p string) (rel string, ok bool) {
	dir := strings.TrimSuffix(o.path, "/")
	if p == dir {
		return path.Base(p), true
	}
	rel, ok = strings.CutPrefix(p, dir+"/")
	return rel, ok
}

// outputsOf are a job's artifacts (./outputs) and named outputs, where
// `outpost ml job download` finds them.
func outputsOf(j api.Job) []jobOutput {
	outs := []jobOutput{{name: "artifacts (./outputs)", uri: jobspec.ArtifactsURI(j.Name)}}
	for _, name := range slices.Sorted(maps.Keys(j.Outputs)) {
		uri := jobspec.DefaultOutputURI(j.Name, name)
		if o := j.Outputs[name]; o != nil && o.Path != "" {
			uri = jobspec.ResolveOutputPath(o.Path, j.Name, name)
		}
		outs = append(outs, jobOutput{name: name, uri: uri})
	}
	for i := range outs {
		outs[i].ds, outs[i].path, outs[i].err = jobspec.ParseDatastoreURI(outs[i].uri)
	}
	return outs
}

// jobLogs is the script's long poll of a job's logs: the API's answer
// (bytes beyond ?from=FILE:OFFSET,..., waiting up to 20 s for some), as
// it is.
func (s *Studio) jobLogs(w http.ResponseWriter, r *http.Request, v *view) {
	q := url.Values{"wait": {"20"}}
	if from := r.URL.Query().Get("from"); from != "" {
		q.Set("from", from)
	}
	err := s.stream(w, r, wsAPI(v.RG, v.WS, "jobs", r.PathValue("name"), "logs")+"?"+q.Encode(), func(_, browser http.Header) {
		browser.Set("Content-Type", "application/json")
	})
	if err != nil {
		s.failAPI(w, r, v, err)
	}
}

// jobFile downloads a file of one of the job's outputs through the API.
// Only outputs of the job are served, and always as an attachment of
// bytes: a job's output is never rendered as a page of the Studio's
// origin.
func (s *Studio) jobFile(w http.ResponseWriter, r *http.Request, v *view) {
	var j api.Job
	if err := s.call(r, http.MethodGet, wsAPI(v.RG, v.WS, "jobs", r.PathValue("name")), nil, &j); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	ds, p := r.PathValue("ds"), r.PathValue("path")
	if !slices.ContainsFunc(outputsOf(j), func(o jobOutput) bool {
		_, in := o.contains(p)
		return o.err == nil && o.ds == ds && in
	}) {
		s.fail(w, r, v, http.StatusNotFound, fmt.Sprintf("%s in datastore %s is not an output of job %s", p, ds, j.Name))
		return
	}
	err := s.stream(w, r, wsAPI(v.RG, v.WS, "datastores", ds, "files")+apiPath(strings.Split(p, "/")...), func(api, browser http.Header) {
		browser.Set("Content-Type", "application/octet-stream")
		browser.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(p)}))
		browser.Set("Content-Security-Policy", "sandbox; default-src 'none'")
		for _, h := range []string{"Content-Length", "X-Content-SHA256"} {
			if val := api.Get(h); val != "" {
				browser.Set(h, val)
			}
		}
	})
	if err != nil {
		s.failAPI(w, r, v, err)
	}
}

func (s *Studio) cancelJob(w http.ResponseWriter, r *http.Request, v *view) {
	name := r.PathValue("name")
	if err := s.call(r, http.MethodPost, wsAPI(v.RG, v.WS, "jobs", name, "cancel"), nil, nil); err != nil {
		s.failAPI(w, r, v, err)
		return
	}
	http.Redirect(w, r, v.Link("jobs", name), http.StatusSeeOther)
}
