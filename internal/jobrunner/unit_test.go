package jobrunner

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	v1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, api.JobRun{})
	good := map[string]string{
		v1.EnvJobURL: w.base, v1.EnvJobToken: "tok", v1.EnvJobCA: w.caPEM,
		EnvInstanceIndex: "0", EnvInstanceCount: "1",
	}
	tests := []struct {
		name string
		set  map[string]string
		want string // "" when valid
	}{
		{"valid", nil, ""},
		{"no url", map[string]string{v1.EnvJobURL: ""}, "missing environment variable(s) OUTPOST_JOB_URL"},
		{"no token nor index", map[string]string{v1.EnvJobToken: "", EnvInstanceIndex: ""}, "OUTPOST_JOB_TOKEN, OUTPOST_INSTANCE_INDEX"},
		{"http url", map[string]string{v1.EnvJobURL: "http://127.0.0.1/x"}, "want an https:// URL"},
		{"token with a space", map[string]string{v1.EnvJobToken: "a b"}, "OUTPOST_JOB_TOKEN: want a single token"},
		{"no PEM", map[string]string{v1.EnvJobCA: "junk"}, "OUTPOST_JOB_CA: no PEM certificate"},
		{"index too big", map[string]string{EnvInstanceIndex: "1"}, "OUTPOST_INSTANCE_INDEX=1: want 0 to 0"},
		{"count not a number", map[string]string{EnvInstanceCount: "two"}, `OUTPOST_INSTANCE_COUNT="two": want a whole number`},
		{"processes zero", map[string]string{EnvProcessesPerInstance: "0"}, "OUTPOST_PROCESSES_PER_INSTANCE=0: want 1 or more"},
		{"unknown framework", map[string]string{EnvFramework: "horovod"}, "OUTPOST_FRAMEWORK: unknown distribution type"},
		{"two instances without hosts", map[string]string{EnvInstanceCount: "2"}, "OUTPOST_HOSTS is not set"},
		{"hosts mismatch", map[string]string{EnvInstanceCount: "2", EnvHosts: "a"}, "1 host(s) for OUTPOST_INSTANCE_COUNT=2"},
		{"relative root", map[string]string{EnvRoot: "azureml"}, "OUTPOST_JOB_ROOT"},
		{"bad proxy", map[string]string{v1.EnvProxy: "ftp://user:pw@proxy"}, "OUTPOST_PROXY_HTTPS: want http://host:port"},
		{"url in skip range", map[string]string{v1.EnvProxy: "http://proxy:3128", v1.EnvNoProxy: "https://x"}, "OUTPOST_PROXY_SKIP_RANGE entry \"https://x\": give a host, domain, IP address or CIDR, not a URL"},
		{"skip range without a proxy", map[string]string{v1.EnvNoProxy: "https://x"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			for k, v := range tc.set {
				env[k] = v
			}
			c, err := loadConfig(func(k string) string { return env[k] })
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.root != DefaultRoot || c.perInstance != 1 || c.terminationLog != "/dev/termination-log" || len(c.world.Hosts) != 1 {
					t.Errorf("defaults: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") || (tc.set[v1.EnvJobToken] != "" && strings.Contains(err.Error(), tc.set[v1.EnvJobToken])) {
				t.Errorf("a secret in the error: %v", err)
			}
		})
	}
}

func TestLastLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 20, ""},
		{"a\nb\nc\n", 20, "a\nb\nc"},
		{"a\nb\nc\n\n", 2, "b\nc"},
		{"a\nb\nc", 1, "c"},
		{"a\r\nb\r\n", 1, "b"},
		{"a\n" + long + "\n", 20, long[len(long)-maxTailBytes:]},
		{"é" + strings.Repeat("é", 2000), 20, strings.Repeat("é", maxTailBytes/2)},
	}
	for _, tc := range tests {
		if got := lastLines([]byte(tc.in), tc.n, maxTailBytes); got != tc.want {
			t.Errorf("lastLines(%.20q, %d) = %.40q (%d bytes), want %.40q (%d bytes)", tc.in, tc.n, got, len(got), tc.want, len(tc.want))
		}
	}
}

func TestFailureMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		out  string
		want string
	}{
		{2, "", "exit code 2"},
		{2, "boom\n", "exit code 2: boom"},
		{127, "x\nbash: line 1: foo: command not found\n", "command not found: bash: line 1: foo: command not found"},
		{127, "sh: 1: foo: not found\nmore\n", "command not found: sh: 1: foo: not found"},
		{127, "python: can't open file\n", "command not found: python: can't open file"},
		{127, "", "exit code 127"},
	}
	for _, tc := range tests {
		if got := failureMessage(tc.code, []byte(tc.out)); got != tc.want {
			t.Errorf("failureMessage(%d, %q) = %q, want %q", tc.code, tc.out, got, tc.want)
		}
	}
	big := bytes.Repeat([]byte(strings.Repeat("y", 200)+"\n"), 40)
	if got := failureMessage(1, big); len(got) > 4096 || !strings.HasPrefix(got, "exit code 1: ") {
		t.Errorf("message of %d bytes: %.40q", len(got), got)
	}
}

// TestLineWriterKeepsLines has two writers send lines in pieces at once:
// the console gets each line whole.
func TestLineWriterKeepsLines(t *testing.T) {
	t.Parallel()
	var out clustertest.Log
	con := &console{w: &out, warn: func(string, ...any) {}}
	var wg sync.WaitGroup
	for p := range 2 {
		// No flush of a partial line by time: a slow goroutine must not
		// make the test see a cut line.
		lw := &lineWriter{out: con, delay: time.Hour}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				line := fmt.Sprintf("process %d line %d\n", p, i)
				lw.Write([]byte(line[:5]))
				lw.Write([]byte(line[5:]))
			}
			lw.close()
		}()
	}
	wg.Wait()
	n := 0
	for _, l := range strings.SplitAfter(out.String(), "\n") {
		if l == "" {
			continue
		}
		var p, i int
		if _, err := fmt.Sscanf(l, "process %d line %d\n", &p, &i); err != nil || fmt.Sprintf("process %d line %d\n", p, i) != l {
			t.Errorf("a cut line: %q", l)
			continue
		}
		n++
	}
	if n != 400 {
		t.Errorf("%d whole lines, want 400", n)
	}
}

func TestLineWriterFlushesPartialLine(t *testing.T) {
	t.Parallel()
	var out clustertest.Log
	lw := &lineWriter{out: &console{w: &out, warn: func(string, ...any) {}}}
	lw.Write([]byte("Epoch 1: 10%\rEpoch 1: 20%"))
	if got := out.String(); got != "Epoch 1: 10%\r" {
		t.Errorf("console %q: a carriage return ends a line", got)
	}
	waitFor(t, "the partial line", func() bool { return out.String() == "Epoch 1: 10%\rEpoch 1: 20%" })
}

func newTestShipper(t *testing.T, w *fakeWorkspace) *shipper {
	t.Helper()
	c, err := httpClient([]byte(w.caPEM), "", "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := newShipper(&jobAPI{base: w.base, token: w.token, http: c}, t.TempDir(), "user_logs/std_log.txt", func(f string, a ...any) { t.Logf(f, a...) })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestShipperSpills keeps writing while the workspace is away: memory stays
// bounded, and every byte arrives, in order, once it is back.
func TestShipperSpills(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, api.JobRun{})
	w.logsDown = true
	s := newTestShipper(t, w)
	s.memLimit = 4 << 10
	var want bytes.Buffer
	for i := range 2000 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if _, err := s.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		if len(s.mem) > s.memLimit {
			t.Fatalf("%d bytes in memory, over %d", len(s.mem), s.memLimit)
		}
		s.mu.Unlock()
	}
	waitFor(t, "a failed append", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.appends) > 0
	})
	w.mu.Lock()
	w.logsDown = false
	w.mu.Unlock()
	if err := s.close(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := w.log("user_logs/std_log.txt"); got != want.String() {
		t.Errorf("log of %d bytes, want %d", len(got), want.Len())
	}
	checkAppends(t, w, "user_logs/std_log.txt")
}

// TestShipperResendsLostTail: the workspace lost what it had acknowledged
// (a 409 with a smaller size); the shipper sends it again from its copy.
func TestShipperResendsLostTail(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, api.JobRun{})
	s := newTestShipper(t, w)
	s.Write([]byte("one\ntwo\n"))
	waitFor(t, "the first lines", func() bool { return w.log("user_logs/std_log.txt") == "one\ntwo\n" })
	w.mu.Lock()
	w.logs["user_logs/std_log.txt"] = []byte("one\n")
	w.mu.Unlock()
	s.Write([]byte("three\n"))
	if err := s.close(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := w.log("user_logs/std_log.txt"); got != "one\ntwo\nthree\n" {
		t.Errorf("log %q", got)
	}
}

func TestShipperGivesUp(t *testing.T) {
	t.Parallel()
	w := newFakeWorkspace(t, api.JobRun{})
	w.logsDown = true
	s := newTestShipper(t, w)
	s.Write([]byte("lost\n"))
	err := s.close(time.Now().Add(200 * time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "sending log user_logs/std_log.txt") || !strings.Contains(err.Error(), "0 of 5 bytes sent") {
		t.Errorf("error %v", err)
	}
}

func TestShims(t *testing.T) {
	t.Parallel()
	exe := func(dir, name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		has  []string
		link string // the shim made, "" for none
		to   string
	}{
		{"python3 only", []string{"python3"}, "python", "python3"},
		{"python only", []string{"python"}, "python3", "python"},
		{"both", []string{"python", "python3"}, "", ""},
		{"neither", nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, bin := t.TempDir(), t.TempDir()
			for _, n := range tc.has {
				exe(bin, n)
			}
			got, err := shims(root, bin)
			if err != nil {
				t.Fatal(err)
			}
			shimDir := filepath.Join(root, "bin/shims")
			if tc.link == "" {
				if got != bin {
					t.Errorf("PATH %q, want %q", got, bin)
				}
				return
			}
			if got != shimDir+":"+bin {
				t.Errorf("PATH %q, want the shims first", got)
			}
			target, err := os.Readlink(filepath.Join(shimDir, tc.link))
			if err != nil || target != filepath.Join(bin, tc.to) {
				t.Errorf("%s -> %q (%v), want %s", tc.link, target, err, filepath.Join(bin, tc.to))
			}
			if lookPath("python", got) == "" || lookPath("python3", got) == "" {
				t.Errorf("python and python3 are not both on %q", got)
			}
		})
	}
}

func TestMakePlan(t *testing.T) {
	t.Parallel()
	root := "/azureml"
	ok := func() api.JobRun {
		return api.JobRun{Name: "j", Command: "true", Artifacts: uri("ExperimentRun/dcid.j/outputs/")}
	}
	t.Run("uri_file output paths", func(t *testing.T) {
		r := ok()
		r.Outputs = map[string]api.RunOutput{
			"a": {Type: "uri_file", URI: uri("x/y/model.pkl")},
			"b": {Type: "uri_file", URI: uri("x/z/")},
			"c": {Type: "uri_folder", URI: uri("x/c")},
		}
		p, err := makePlan(&r, root)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct{ value, path, folder string }{
			{"/azureml/outputs/a/model.pkl", "x/y/model.pkl", ""},
			{"/azureml/outputs/b/output", "x/z/output", ""},
			{"/azureml/outputs/c", "x/c", "x/c/"},
		}
		for i, o := range p.outputs {
			if o.value != want[i].value || o.loc.path != want[i].path || (!o.file && o.loc.folder() != want[i].folder) {
				t.Errorf("output %s: value %s, path %s, folder %s; want %+v", o.name, o.value, o.loc.path, o.loc.folder(), want[i])
			}
		}
	})
	bad := []struct {
		name   string
		change func(*api.JobRun)
		want   string
	}{
		{"no command", func(r *api.JobRun) { r.Command = "" }, "no command"},
		{"no artifacts", func(r *api.JobRun) { r.Artifacts = "" }, "no artifacts URI"},
		{"bad mode", func(r *api.JobRun) {
			r.Inputs = map[string]api.RunInput{"d": {Type: "uri_folder", URI: uri("d/"), Mode: "rw_mount"}}
		}, `input d: mode "rw_mount": want ro_mount, download or direct`},
		{"uri_file of a folder", func(r *api.JobRun) {
			r.Inputs = map[string]api.RunInput{"d": {Type: "uri_file", URI: uri("d/")}}
		}, "a uri_file names a file"},
		{"neither literal nor uri", func(r *api.JobRun) { r.Inputs = map[string]api.RunInput{"d": {}} }, "neither a literal nor a URI"},
		{"bad name", func(r *api.JobRun) {
			r.Outputs = map[string]api.RunOutput{"../x": {URI: uri("o/")}}
		}, `output name "../x"`},
		{"two errors", func(r *api.JobRun) { r.Command, r.Artifacts = "", "" }, "no command\nthe job has no artifacts"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.change(&r)
			if _, err := makePlan(&r, root); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestBaseEnvDropsCredentials(t *testing.T) {
	t.Parallel()
	e := baseEnv([]string{"HOME=/root", "OUTPOST_JOB_TOKEN=x", "OUTPOST_JOB_CA=y", "OUTPOST_JOB_URL=z",
		"OUTPOST_PROXY_HTTPS=p", "OUTPOST_PROXY_SKIP_RANGE=q", "OUTPOST_INSTANCE_INDEX=0", "PATH=/old", "junk"}, "/new")
	got := strings.Join(e.list(), " ")
	if got != "HOME=/root OUTPOST_INSTANCE_INDEX=0 PATH=/new" {
		t.Errorf("environment %q", got)
	}
}
