package cli

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/output"
)

func TestPlanDownload(t *testing.T) {
	job := api.Job{JobSpec: api.JobSpec{Name: "j1", Outputs: map[string]*api.Output{
		"model":  {Type: "uri_folder"},
		"custom": {Type: "uri_file", Path: "azureml://datastores/workspaceblobstore/paths/mine/${{name}}/m.pkl"},
	}}}
	arts := downloadItem{What: "artifacts (./outputs)", URI: "azureml://datastores/workspaceblobstore/paths/ExperimentRun/dcid.j1/outputs/", Dest: filepath.Join("d", "artifacts", "outputs")}
	model := downloadItem{What: "output model", URI: "azureml://datastores/workspaceblobstore/paths/azureml/j1/model/", Dest: filepath.Join("d", "named-outputs", "model")}
	custom := downloadItem{What: "output custom", URI: "azureml://datastores/workspaceblobstore/paths/mine/j1/m.pkl", Dest: filepath.Join("d", "named-outputs", "custom")}
	cases := []struct {
		all  bool
		name string
		want []downloadItem
		err  string
	}{
		{false, "", []downloadItem{arts}, ""},
		{false, "artifacts", []downloadItem{arts}, ""},
		{false, "model", []downloadItem{model}, ""},
		{false, "custom", []downloadItem{custom}, ""},
		{true, "", []downloadItem{arts, custom, model}, ""},
		{false, "nope", nil, "job j1 has no such output; its outputs: artifacts (the default), custom, model"},
	}
	for _, tc := range cases {
		got, err := planDownload(job, tc.all, tc.name, "d")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("all=%v name=%q: %v, want %q", tc.all, tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("all=%v name=%q:\n got %+v %v\nwant %+v", tc.all, tc.name, got, err, tc.want)
		}
	}
}

func TestJobPatch(t *testing.T) {
	got, err := jobPatch([]string{"tags.stage=prod", "display_name=x=y", "description=", "properties.p=1", `tags={"a": "b"}`}, []string{"tags.old"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"description":"","display_name":"x=y","properties":{"p":"1"},"tags":{"a":"b","old":null,"stage":"prod"}}`
	if string(data) != want {
		t.Errorf("patch %s\nwant  %s", data, want)
	}
	for _, bad := range [][]string{{"command=x"}, {"tags."}, {"novalue"}, {"tags=notjson"}} {
		if _, err := jobPatch(bad, nil); err == nil {
			t.Errorf("--set %v accepted", bad)
		}
	}
	if _, err := jobPatch(nil, nil); err == nil || !strings.Contains(err.Error(), "nothing to update") {
		t.Errorf("no --set: %v", err)
	}
	if _, err := jobPatch(nil, []string{"compute"}); err == nil {
		t.Error("--remove compute accepted")
	}
}

func TestJobTables(t *testing.T) {
	start := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	end := start.Add(90 * time.Second)
	jobs := []api.Job{
		{JobSpec: api.JobSpec{Name: "done", Compute: "azureml:k8s", ExperimentName: "e", Type: "command"}, Status: api.JobCompleted, StartTime: &start, EndTime: &end},
		{JobSpec: api.JobSpec{Name: "running", Compute: "k8s"}, Status: api.JobRunning, StartTime: &start},
		{JobSpec: api.JobSpec{Name: "waiting"}, Status: api.JobQueued},
	}
	lt := jobListTable(jobs, start.Add(time.Hour))()
	if got := strings.Join(lt.Header, ","); got != "NAME,STATUS,COMPUTE,EXPERIMENT,DURATION,CREATED" {
		t.Errorf("list header %s", got)
	}
	want := [][]string{
		{"done", "Completed", "k8s", "e", "1m30s", "-"},
		{"running", "Running", "k8s", "-", "1h0m0s", "-"},
		{"waiting", "Queued", "-", "-", "-", "-"},
	}
	if !reflect.DeepEqual(lt.Rows, want) {
		t.Errorf("list rows %q\nwant %q", lt.Rows, want)
	}
	st := jobTable(jobs[0])()
	if got := strings.Join(st.Header, ","); got != "NAME,STATUS,COMPUTE,EXPERIMENT,TYPE,CREATED" || st.Rows[0][4] != "command" {
		t.Errorf("show table %q %q", st.Header, st.Rows)
	}
}

func TestInstanceTypeTable(t *testing.T) {
	its := []api.InstanceType{
		{Name: "gpu", NodeSelector: map[string]string{"pool": "gpu", "accel": "a100"},
			Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "4", "memory": "16Gi"}, Limits: map[string]string{"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}}},
		{Name: "defaultinstancetype", BuiltIn: true,
			Resources: api.InstanceTypeResources{Requests: map[string]string{"cpu": "100m", "memory": "2Gi"}, Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}},
	}
	tb := instanceTypeTable(its)
	want := [][]string{
		{"defaultinstancetype (built-in)", "100m/2", "2Gi/2Gi", "-", "-"},
		{"gpu", "4/8", "16Gi/32Gi", "1", "accel=a100,pool=gpu"},
	}
	if !reflect.DeepEqual(tb.Rows, want) {
		t.Errorf("rows %q\nwant %q", tb.Rows, want)
	}
}

// -o and --query are checked before any work, take any case, and work
// on every command that prints.
func TestOutputFlags(t *testing.T) {
	noWorkspace(t)
	stdout, _, err := run(t, "version", "-o", "JSON", "--query", "{v: version}")
	if err != nil || !strings.Contains(stdout, `"v":`) {
		t.Errorf("version -o JSON --query: %q %v", stdout, err)
	}
	stdout, _, err = run(t, "version", "-o", "tsv", "--query", "version")
	if err != nil || strings.TrimSpace(stdout) == "" || strings.Contains(stdout, "\t") {
		t.Errorf("version -o tsv --query version: %q %v", stdout, err)
	}
	stdout, _, err = run(t, "version", "-o", "none")
	if err != nil || stdout != "" {
		t.Errorf("version -o none: %q %v, want nothing printed", stdout, err)
	}
	for _, args := range [][]string{
		{"ml", "job", "show", "-n", "j", "-g", "rg", "-w", "ws", "-o", "xml"},
		{"ml", "compute", "list", "-g", "rg", "-w", "ws", "-o", "xml"},
		{"connectedk8s", "list", "-o", "xml"},
		{"ml", "environment", "list", "-g", "rg", "-w", "ws", "-o", "xml"},
	} {
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), `-o "xml"`) || !strings.Contains(err.Error(), "tsv") {
			t.Errorf("%v: %v, want the -o error naming the formats", args, err)
		}
	}
	_, _, err = run(t, "ml", "job", "list", "-g", "rg", "-w", "ws", "--query", "[?status=='x'")
	if err == nil || !strings.Contains(err.Error(), "--query") {
		t.Errorf("bad --query: %v", err)
	}
}

// Every command that prints resources has the output flags.
func TestEveryPrintingCommandHasOutputFlags(t *testing.T) {
	// Commands that print messages or streams, not resources.
	plain := map[string]bool{
		"outpost cluster up": true, "outpost cluster down": true, "outpost cluster kubeconfig": true,
		"outpost connectedk8s delete": true, "outpost k8s-extension delete": true, "outpost k8s-extension render": true,
		"outpost ml compute detach": true, "outpost ml job stream": true, "outpost ml job download": true, "outpost login": true,
		"outpost workspace serve": true,
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Hidden || !c.Runnable() || plain[c.CommandPath()] || c.HasParent() && c.Parent().Hidden {
			return
		}
		if c.Flags().Lookup("output") == nil || c.Flags().Lookup("query") == nil {
			t.Errorf("%s has no -o/--query", c.CommandPath())
		}
	}
	walk(newRoot())
}

func TestEnumFlagsTakeAnyCase(t *testing.T) {
	var v string
	f := enumFlag{&v, []string{"uri_folder", "uri_file", "mltable"}}
	if err := f.Set("URI_File"); err != nil || v != "uri_file" {
		t.Errorf("Set(URI_File): %q %v", v, err)
	}
	if err := f.Set("folder"); err == nil || !strings.Contains(err.Error(), "uri_folder, uri_file, mltable") {
		t.Errorf("Set(folder): %v, want the allowed values", err)
	}
}

func TestNormalizeDoc(t *testing.T) {
	m := map[string]any{"name": "e", "version": json.Number("1"), "tags": map[string]any{"n": json.Number("2")},
		"build": map[string]any{"path": "x", "dockerfile": "D"}, "imgae": "typo"}
	errs := normalizeDoc(m, reflect.TypeFor[api.Environment](), "")
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	got := strings.Join(msgs, "\n")
	for _, w := range []string{`build.dockerfile: unknown field "dockerfile"`, `imgae: unknown field "imgae"`} {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\nwant %q", got, w)
		}
	}
	if strings.Contains(got, "creation_context") {
		t.Errorf("read-only fields offered as allowed: %s", got)
	}
	if m["version"] != "1" || m["tags"].(map[string]any)["n"] != "2" {
		t.Errorf("numbers not made text: %v", m)
	}
}

// The logs of a job land under DEST/artifacts/user_logs, in as many
// requests as the workspace needs to send them.
func TestDownloadLogs(t *testing.T) {
	files := map[string]string{"user_logs/std_log_process_0.txt": "zero\nzero again\n", "user_logs/std_log_process_1.txt": "one\n"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "0" {
			t.Errorf("logs listed with wait=%q, want 0", r.URL.Query().Get("wait"))
		}
		from := map[string]int64{}
		if f := r.URL.Query().Get("from"); f != "" {
			for _, part := range strings.Split(f, ",") {
				i := strings.LastIndex(part, ":")
				n, err := strconv.ParseInt(part[i+1:], 10, 64)
				if err != nil {
					t.Errorf("from %q: %v", f, err)
				}
				from[part[:i]] = n
			}
		}
		// At most 5 bytes per file and answer, to take several rounds.
		logs := api.JobLogs{Status: api.JobCompleted, Done: true, Chunks: []api.JobLogChunk{}}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			off := from[name]
			data := files[name][off:]
			if len(data) == 0 {
				continue
			}
			data = data[:min(5, len(data))]
			logs.Done = false
			logs.Chunks = append(logs.Chunks, api.JobLogChunk{File: name, Offset: off, Data: []byte(data)})
		}
		if err := json.NewEncoder(w).Encode(logs); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	ws, err := client.New(client.Config{URL: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "artifacts")
	n, err := downloadLogs(context.Background(), ws, wsPath{rg: "rg", ws: "ws"}, "j1", dest)
	if err != nil || n != 2 {
		t.Fatalf("downloadLogs: %d %v", n, err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(name)))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
}

func TestPrintResultNone(t *testing.T) {
	if err := validOutput(output.Options{Format: "none", Query: "[bad"}); err == nil {
		t.Error("-o none with a bad --query accepted")
	}
}

// Assets against a workspace: a local data folder is uploaded once and
// registered; an environment's conda file is inlined.
func TestAssetsAgainstAWorkspace(t *testing.T) {
	serve(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"data/a.csv": "1,2\n",
		"data.yml":   "name: iris\nversion: 1\npath: ./data\ntype: URI_FOLDER\n",
		"env.yml":    "name: sk\nimage: python:3.11\nconda_file: conda.yml\n",
		"conda.yml":  "name: sk\ndependencies: [python=3.11]\n",
	})
	ws := []string{"-g", "rg", "-w", "ws"}
	stdout, stderr, err := run(t, append([]string{"ml", "data", "create", "-f", filepath.Join(dir, "data.yml"), "--query", "path", "-o", "tsv"}, ws...)...)
	if err != nil || !strings.HasPrefix(stdout, "azureml://datastores/workspaceblobstore/paths/LocalUpload/") || !strings.Contains(stderr, "Uploading path (1 file") {
		t.Fatalf("data create: %q %q %v", stdout, stderr, err)
	}
	_, stderr, err = run(t, append([]string{"ml", "data", "create", "--name", "iris", "--path", filepath.Join(dir, "data"), "--type", "uri_folder"}, ws...)...)
	if err != nil || !strings.Contains(stderr, "path unchanged, reusing its upload") {
		t.Fatalf("data create again: %q %v", stderr, err)
	}
	stdout, _, err = run(t, append([]string{"ml", "data", "show", "-n", "iris", "--label", "Latest", "--query", "version", "-o", "tsv"}, ws...)...)
	if err != nil || strings.TrimSpace(stdout) != "2" {
		t.Fatalf("data show --label latest: %q %v, want version 2", stdout, err)
	}
	stdout, _, err = run(t, append([]string{"ml", "environment", "create", "-f", filepath.Join(dir, "env.yml"), "--version", "7", "-o", "json"}, ws...)...)
	if err != nil || !strings.Contains(stdout, `"dependencies"`) || !strings.Contains(stdout, `"version": "7"`) {
		t.Fatalf("environment create: %s %v", stdout, err)
	}
	stdout, _, err = run(t, append([]string{"ml", "environment", "list"}, ws...)...)
	if err != nil || !strings.Contains(stdout, "sk") || !strings.Contains(stdout, "python:3.11") {
		t.Fatalf("environment list: %s %v", stdout, err)
	}
	stdout, _, err = run(t, "ml", "workspace", "show", "-n", "ws", "-g", "rg", "-o", "json")
	if err != nil || !strings.Contains(stdout, `"name": "ws"`) {
		t.Fatalf("workspace show: %s %v", stdout, err)
	}
}

// A job whose file is wrong uploads nothing; one the workspace refuses
// says why.
func TestJobCreateAgainstAWorkspace(t *testing.T) {
	serve(t)
	dir := jobDir(t)
	ws := []string{"-g", "rg", "-w", "ws"}
	_, stderr, err := run(t, append([]string{"ml", "job", "create", "-f", filepath.Join(dir, "unknown", "job.yml")}, ws...)...)
	if err == nil || !strings.Contains(err.Error(), `unknown field "comand"`) || strings.Contains(stderr, "Uploading") {
		t.Fatalf("job create with a typo: %v\n%s", err, stderr)
	}
	_, stderr, err = run(t, append([]string{"ml", "job", "create", "-f", filepath.Join(dir, "job.yml")}, ws...)...)
	if err == nil {
		t.Fatal("job on a compute that does not exist accepted")
	}
	if want := filepath.Join(dir, "job.yml") + ", line 5: compute: compute k8s not found"; !strings.Contains(err.Error(), want) {
		t.Errorf("refusal: %v\nwant %q", err, want)
	}
	_, _, err = run(t, append([]string{"ml", "job", "show", "-n", "nope"}, ws...)...)
	if err == nil {
		t.Fatal("show of a missing job succeeded")
	}
}

// Values of enum flags go to the workspace in their canonical spelling.
func TestClusterTypeTakesAnyCase(t *testing.T) {
	serve(t)
	stdout, _, err := run(t, append(append([]string{}, createArgs[:len(createArgs)-4]...), "--cluster-type", "CONNECTEDCLUSTERS",
		"--extension-type", "microsoft.azureml.kubernetes", "--no-wait", "--config", "enableTraining=True", "--query", "name", "-o", "tsv")...)
	if err != nil || strings.TrimSpace(stdout) != "ml" {
		t.Fatalf("create with --cluster-type CONNECTEDCLUSTERS: %q %v", stdout, err)
	}
	_, _, err = run(t, "k8s-extension", "show", "-n", "ml", "-c", "c1", "-g", "rg", "-t", "aks")
	if err == nil || !strings.Contains(err.Error(), "connectedClusters, managedClusters") {
		t.Fatalf("--cluster-type aks: %v, want the allowed values", err)
	}
}
