package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/internal/clustertest"
)

// These tests run the embedded server.py with the machine's Python on a
// scoring script, over HTTP on loopback, as the kubelet's probes and the
// router would call it.

// testScript is a scoring script whose requests say what to do.
const testScript = `
import json, os, sys, time
import helper  # from the script's folder

INIT_CALLS = 0
ACTIVE = 0

def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.01)

def init():
    global INIT_CALLS
    INIT_CALLS += 1
    if os.environ.get("GATE"):
        wait_for(os.environ["GATE"])
    if os.environ.get("FAIL_INIT"):
        raise RuntimeError("cannot load the model: " + os.environ["FAIL_INIT"])
    print("init done in", os.getcwd())

def run(raw_data):
    global ACTIVE
    req = json.loads(raw_data)
    kind = req.get("kind")
    if kind == "error":
        raise ValueError("bad input: " + req["why"])
    if kind == "str":
        return "plain string"
    if kind == "bytes":
        return b"raw"
    if kind == "echo":
        return {"raw": raw_data}
    if kind == "wait":
        ACTIVE += 1
        if ACTIVE > 1:
            print("overlap", flush=True)
        print("waiting " + req["name"], flush=True)
        wait_for(req["gate"])
        ACTIVE -= 1
        return "waited " + req["name"]
    return {"sum": helper.total(req["data"]), "init_calls": INIT_CALLS, "cwd": os.getcwd()}
`

const testHelper = "def total(xs):\n    return sum(xs)\n"

// syncBuffer is a log that goroutines write and the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testPython(t *testing.T) string {
	t.Helper()
	p, err := findPython(os.Getenv("PATH"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pyServer is server.py running on a scoring script.
type pyServer struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	url  string
	code string // the code folder
	term string
	done chan struct{}
	exit int
}

var listeningRE = regexp.MustCompile(`listening on 127\.0\.0\.1:(\d+)`)

// startPy runs server.py (as `score serve` writes it) on script, with env
// added to the test's environment.
func startPy(t *testing.T, python, script string, env []string, args ...string) *pyServer {
	t.Helper()
	root := t.TempDir()
	s := &pyServer{t: t, out: &syncBuffer{}, code: filepath.Join(root, dirCode), term: filepath.Join(root, "termination-log"), done: make(chan struct{})}
	if err := os.MkdirAll(s.code, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"score.py": script, "helper.py": testHelper} {
		if err := os.WriteFile(filepath.Join(s.code, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	server, err := writeServer(root)
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{server, "--script", filepath.Join(s.code, "score.py"), "--code-dir", s.code,
		"--host", "127.0.0.1", "--port", "0", "--name", "e1", "--termination-log", s.term}, args...)
	s.cmd = exec.Command(python, argv...)
	s.cmd.Dir = s.code
	s.cmd.Env = append(append(os.Environ(), "PYTHONUNBUFFERED=1"), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		s.exit = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("server log:\n%s", s.out.String())
		}
	})
	clustertest.Eventually(t, 20*time.Second, "the server listening", func() error {
		if m := listeningRE.FindStringSubmatch(s.out.String()); m != nil {
			s.url = "http://127.0.0.1:" + m[1]
			return nil
		}
		select {
		case <-s.done:
			t.Fatalf("the server exited with %d before listening:\n%s", s.exit, s.out.String())
		default:
		}
		return errors.New("no 'listening on' line yet")
	})
	return s
}

// wait waits for the server to exit and returns its exit code.
func (s *pyServer) wait() int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.exit
	case <-time.After(20 * time.Second):
		s.t.Fatalf("the server did not exit:\n%s", s.out.String())
		return 0
	}
}

type reply struct {
	status int
	body   string
	header http.Header
}

func (s *pyServer) do(method, path, body string) reply {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return reply{resp.StatusCode, string(data), resp.Header}
}

func (s *pyServer) waitHealthy() {
	s.t.Helper()
	clustertest.Eventually(s.t, 20*time.Second, "GET / healthy", func() error {
		if r := s.do("GET", "/", ""); r.status != 200 {
			return fmt.Errorf("GET / = %d %q", r.status, r.body)
		}
		return nil
	})
}

func (s *pyServer) waitLog(what string) {
	s.t.Helper()
	clustertest.Eventually(s.t, 20*time.Second, "log line "+what, func() error {
		if !strings.Contains(s.out.String(), what) {
			return errors.New("not in the log yet")
		}
		return nil
	})
}

func TestServerReadinessInitAndScore(t *testing.T) {
	python := testPython(t)
	gate := filepath.Join(t.TempDir(), "gate")
	s := startPy(t, python, testScript, []string{"GATE=" + gate})

	// Listening, init() not returned: not ready, and no scoring.
	if r := s.do("GET", "/", ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("GET / during init() = %d %q, want 503", r.status, r.body)
	}
	if r := s.do("POST", "/score", `{"data": [1, 2]}`); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "init()") {
		t.Fatalf("POST /score during init() = %d %q, want 503 saying init() has not returned", r.status, r.body)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.waitHealthy()
	if r := s.do("GET", "/", ""); r.body != "Healthy" {
		t.Errorf("GET / body = %q, want Healthy", r.body)
	}

	for i := range 3 {
		r := s.do("POST", "/score", fmt.Sprintf(`{"data": [1, 2, %d]}`, i))
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("POST /score = %d %s %q", r.status, r.header.Get("Content-Type"), r.body)
		}
		var got struct {
			Sum       int    `json:"sum"`
			InitCalls int    `json:"init_calls"`
			Cwd       string `json:"cwd"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("POST /score body %q: %v", r.body, err)
		}
		if got.Sum != 3+i || got.InitCalls != 1 || got.Cwd != s.code {
			t.Errorf("run() = %+v, want sum %d, init() called once, cwd %s", got, 3+i, s.code)
		}
	}

	// A str is JSON-encoded like any value, as azmlinfsrv does.
	if r := s.do("POST", "/score", `{"kind": "str"}`); r.status != 200 || r.body != `"plain string"` {
		t.Errorf("run() returning a str: %d %q, want 200 \"plain string\" (a JSON string)", r.status, r.body)
	}
	// run()'s exception: 500 with its message; the traceback in the log.
	if r := s.do("POST", "/score", `{"kind": "error", "why": "no rows"}`); r.status != 500 || strings.TrimSpace(r.body) != "ValueError: bad input: no rows" {
		t.Errorf("run() raising: %d %q, want 500 \"ValueError: bad input: no rows\"", r.status, r.body)
	}
	if r := s.do("POST", "/score", `{"kind": "bytes"}`); r.status != 500 || !strings.Contains(r.body, "not JSON-serializable") {
		t.Errorf("run() returning bytes: %d %q, want 500 saying it is not JSON-serializable", r.status, r.body)
	}
	// Not UTF-8: run() gets U+FFFD, as Flask's get_data(as_text=True) gives.
	if r := s.do("POST", "/score", "{\"kind\": \"echo\", \"x\": \"\xff\"}"); r.status != 200 || !strings.Contains(r.body, `\ufffd`) {
		t.Errorf("a body that is not UTF-8: %d %q, want 200 with U+FFFD in its place", r.status, r.body)
	}

	// Swagger: an OpenAPI 2 document of POST /score.
	r := s.do("GET", "/swagger.json", "")
	var doc struct {
		Swagger string                                `json:"swagger"`
		Info    struct{ Title string }                `json:"info"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil || r.status != 200 {
		t.Fatalf("GET /swagger.json = %d %q: %v", r.status, r.body, err)
	}
	if doc.Swagger != "2.0" || doc.Paths["/score"]["post"] == nil || doc.Info.Title != "e1" {
		t.Errorf("swagger.json = %s, want swagger 2.0 with POST /score, titled e1", r.body)
	}

	if r := s.do("GET", "/score", ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /score = %d (Allow %q), want 405 with Allow: POST", r.status, r.header.Get("Allow"))
	}
	if r := s.do("GET", "/nope", ""); r.status != http.StatusNotFound || !strings.Contains(r.body, "POST /score") {
		t.Errorf("GET /nope = %d %q, want 404 naming the routes", r.status, r.body)
	}

	// Each request has a line: method, path, status, duration; the
	// traceback of run()'s exception is there too.
	s.waitLog("GET /nope 404")
	log := s.out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`GET / 503 [0-9.]+ ms`),
		regexp.MustCompile(`GET / 200 [0-9.]+ ms`),
		regexp.MustCompile(`POST /score 200 [0-9.]+ ms`),
		regexp.MustCompile(`POST /score 500 [0-9.]+ ms`),
		regexp.MustCompile(`(?s)run\(\) raised:\nTraceback .*ValueError: bad input: no rows`),
		regexp.MustCompile(`GET /swagger.json 200 [0-9.]+ ms`),
	} {
		if !want.MatchString(log) {
			t.Errorf("the log has no match for %s:\n%s", want, log)
		}
	}
}

func TestServerNeverLogsBodies(t *testing.T) {
	s := startPy(t, testPython(t), testScript, nil)
	s.waitHealthy()
	const marker = "s3cret-payload-7f1c"
	if r := s.do("POST", "/score", `{"kind": "echo", "x": "`+marker+`"}`); r.status != 200 || !strings.Contains(r.body, marker) {
		t.Fatalf("echo = %d %q", r.status, r.body)
	}
	if r := s.do("POST", "/score?token="+marker, `{"data": [1]}`); r.status != 200 {
		t.Fatalf("POST /score?token= = %d %q", r.status, r.body)
	}
	s.waitLog("POST /score 200")
	clustertest.Eventually(t, 10*time.Second, "two request lines", func() error {
		if n := strings.Count(s.out.String(), "POST /score 200"); n < 2 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	if strings.Contains(s.out.String(), marker) {
		t.Errorf("the log shows a request's body or query:\n%s", s.out.String())
	}
}

func TestServerKeepAliveChunkedAndLimits(t *testing.T) {
	s := startPy(t, testPython(t), testScript, nil, "--max-body-bytes", "1000")
	s.waitHealthy()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	reused := 0
	for i := range 3 {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", s.url+"/score", strings.NewReader(`{"data": [1]}`))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if reused != 2 {
		t.Errorf("%d of 3 requests reused the connection, want 2 (HTTP/1.1 keep-alive)", reused)
	}

	// A chunked body (no Content-Length) is read whole.
	body := `{"kind": "echo", "pad": "` + strings.Repeat("x", 300) + `"}`
	req, _ := http.NewRequest("POST", s.url+"/score", io.MultiReader(strings.NewReader(body)))
	req.ContentLength = -1
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var echo struct{ Raw string }
	if resp.StatusCode != 200 || json.Unmarshal(data, &echo) != nil || echo.Raw != body {
		t.Errorf("chunked POST /score = %d %q, want the body echoed", resp.StatusCode, data)
	}

	// Over --max-body-bytes, either way: 413.
	big := `{"kind": "echo", "pad": "` + strings.Repeat("x", 2000) + `"}`
	if r := s.do("POST", "/score", big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 KB body over a 1000-byte limit = %d %q, want 413", r.status, r.body)
	}
	req, _ = http.NewRequest("POST", s.url+"/score", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked 2 KB body over a 1000-byte limit = %d, want 413", resp.StatusCode)
	}
}

// waitRequest sends a request whose run() waits for gate; the result comes
// on the channel. wrote is closed once the request is on the wire.
func (s *pyServer) waitRequest(name, gate string) (<-chan reply, <-chan struct{}) {
	ch := make(chan reply, 1)
	wrote := make(chan struct{})
	go func() {
		var once sync.Once
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) }}
		body := fmt.Sprintf(`{"kind": "wait", "name": %q, "gate": %q}`, name, gate)
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", s.url+"/score", strings.NewReader(body))
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			ch <- reply{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		ch <- reply{status: resp.StatusCode, body: string(data)}
	}()
	return ch, wrote
}

func TestServerRunsOneAtATimeByDefault(t *testing.T) {
	s := startPy(t, testPython(t), testScript, nil)
	s.waitHealthy()
	dir := t.TempDir()
	a, _ := s.waitRequest("a", filepath.Join(dir, "a"))
	s.waitLog("waiting a")
	// run() is busy: the health check still answers (threads).
	if r := s.do("GET", "/", ""); r.status != 200 {
		t.Fatalf("GET / while run() works = %d", r.status)
	}
	b, wroteB := s.waitRequest("b", filepath.Join(dir, "b"))
	<-wroteB
	os.WriteFile(filepath.Join(dir, "a"), nil, 0o644)
	if r := <-a; r.status != 200 || r.body != `"waited a"` {
		t.Fatalf("a = %d %q", r.status, r.body)
	}
	s.waitLog("waiting b")
	os.WriteFile(filepath.Join(dir, "b"), nil, 0o644)
	if r := <-b; r.status != 200 {
		t.Fatalf("b = %d %q", r.status, r.body)
	}
	if strings.Contains(s.out.String(), "overlap") {
		t.Errorf("two run() calls overlapped with WORKER_COUNT unset:\n%s", s.out.String())
	}
}

func TestServerWorkerCount(t *testing.T) {
	s := startPy(t, testPython(t), testScript, []string{"WORKER_COUNT=2"})
	s.waitHealthy()
	dir := t.TempDir()
	a, _ := s.waitRequest("a", filepath.Join(dir, "a"))
	b, _ := s.waitRequest("b", filepath.Join(dir, "b"))
	// Both in run() at once: neither returns before both have started.
	s.waitLog("waiting a")
	s.waitLog("waiting b")
	os.WriteFile(filepath.Join(dir, "a"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "b"), nil, 0o644)
	for _, ch := range []<-chan reply{a, b} {
		if r := <-ch; r.status != 200 {
			t.Fatalf("%d %q", r.status, r.body)
		}
	}
}

func TestServerBadWorkerCount(t *testing.T) {
	root := t.TempDir()
	server, err := writeServer(root)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "score.py"), []byte(testScript), 0o644)
	term := filepath.Join(root, "term")
	cmd := exec.Command(testPython(t), server, "--script", filepath.Join(root, "score.py"), "--host", "127.0.0.1", "--port", "0", "--termination-log", term)
	cmd.Env = append(os.Environ(), "WORKER_COUNT=many")
	out, _ := cmd.CombinedOutput()
	msg, _ := os.ReadFile(term)
	if cmd.ProcessState.ExitCode() != ExitInitFailed || !strings.Contains(string(msg), `WORKER_COUNT='many'`) {
		t.Errorf("WORKER_COUNT=many: exit %d, termination message %q, want %d and a message naming it\n%s", cmd.ProcessState.ExitCode(), msg, ExitInitFailed, out)
	}
}

func TestServerSIGTERMFinishesInFlight(t *testing.T) {
	s := startPy(t, testPython(t), testScript, nil)
	s.waitHealthy()
	gate := filepath.Join(t.TempDir(), "gate")
	res, _ := s.waitRequest("slow", gate)
	s.waitLog("waiting slow")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// No new connections once the signal is in; the request in flight
	// goes on.
	addr := strings.TrimPrefix(s.url, "http://")
	clustertest.Eventually(t, 20*time.Second, "the listener closed", func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("still accepting")
	})
	select {
	case r := <-res:
		t.Fatalf("the request in flight ended before run() returned: %d %q", r.status, r.body)
	case <-s.done:
		t.Fatalf("the server exited (%d) with a request in flight", s.exit)
	default:
	}
	os.WriteFile(gate, nil, 0o644)
	if r := <-res; r.status != 200 || r.body != `"waited slow"` {
		t.Errorf("the request in flight at SIGTERM = %d %q, want 200", r.status, r.body)
	}
	if code := s.wait(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if !strings.Contains(s.out.String(), "stopped") {
		t.Errorf("no 'stopped' in the log:\n%s", s.out.String())
	}
}

func TestServerInitFailure(t *testing.T) {
	s := startPy(t, testPython(t), testScript, []string{"FAIL_INIT=weights.bin is missing"})
	if code := s.wait(); code != ExitInitFailed {
		t.Fatalf("exit code = %d, want %d", code, ExitInitFailed)
	}
	msg, err := os.ReadFile(s.term)
	if err != nil {
		t.Fatalf("no termination message: %v", err)
	}
	for _, want := range []string{"Traceback (most recent call last)", "in init", "RuntimeError: cannot load the model: weights.bin is missing"} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("termination message %q lacks %q", msg, want)
		}
	}
	if !strings.Contains(s.out.String(), "init() failed:\nTraceback") {
		t.Errorf("the log lacks the traceback:\n%s", s.out.String())
	}
}

func TestServerScriptProblems(t *testing.T) {
	python := testPython(t)
	for _, c := range []struct{ name, script, want string }{
		{"no run", "def init():\n    pass\n", "defines no run() function"},
		{"no init", "def run(x):\n    return x\n", "defines no init() function"},
		{"syntax error", "def init(:\n", "SyntaxError"},
		{"import error", "import no_such_module_xyz\ndef init(): pass\ndef run(x): return x\n", "ModuleNotFoundError: No module named 'no_such_module_xyz'"},
		{"sys.exit in init", "import sys\ndef init():\n    sys.exit(2)\ndef run(x): return x\n", "sys.exit(2)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startPy(t, python, c.script, nil)
			if code := s.wait(); code != ExitInitFailed {
				t.Fatalf("exit code = %d, want %d\n%s", code, ExitInitFailed, s.out.String())
			}
			msg, _ := os.ReadFile(s.term)
			if !strings.Contains(string(msg), c.want) {
				t.Errorf("termination message %q lacks %q", msg, c.want)
			}
		})
	}
}
