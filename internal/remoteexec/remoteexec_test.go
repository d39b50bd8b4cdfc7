package remoteexec

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"outpost.dev/outpost/internal/clustertest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	drainTimeout = 200 * time.Millisecond
	handshakeTimeout = 5 * time.Second
	rshDialFor = time.Second
	os.Exit(m.Run())
}

var testKey = Key("job-token-for-tests")

// buffer is a writer that tests can read while it is written, and wait on.
type buffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	kick chan struct{}
}

func newBuffer() *buffer { return &buffer{kick: make(chan struct{}, 1)} }

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Write(p)
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor waits until the buffer holds s.
func (b *buffer) waitFor(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.kick:
		case <-timeout:
			t.Fatalf("timed out waiting for %q; have %q", s, b.String())
		}
	}
}

type testServer struct {
	addr string
	logs *buffer
	stop context.CancelFunc
	done chan error
}

func startServer(t *testing.T, key []byte) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{addr: l.Addr().String(), logs: newBuffer(), stop: cancel, done: make(chan error, 1)}
	s := &Server{Key: key, Env: []string{"PATH=" + os.Getenv("PATH"), "BASE=base"}, Dir: t.TempDir(),
		Logf: func(format string, args ...any) { fmt.Fprintf(ts.logs, format+"\n", args...) }}
	go func() { ts.done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(20 * time.Second):
			t.Error("the server did not stop")
		}
	})
	return ts
}

// run runs a shell command on ts and returns its code and output.
func run(t *testing.T, ts *testServer, req Request, stdin io.Reader) (int, string, string, error) {
	t.Helper()
	c, err := Dial(context.Background(), ts.addr, testKey)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code, err := c.Run(req, stdin, &out, &errOut, nil)
	return code, out.String(), errOut.String(), err
}

func sh(script string) Request { return Request{Argv: []string{"sh", "-c", script}} }

func TestAuthentication(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	marker := t.TempDir() + "/ran"
	c, err := Dial(context.Background(), ts.addr, Key("another-token"))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("dial with the wrong key: %v, want ErrAuth", err)
	}
	if c != nil {
		c.Run(sh("touch "+marker), nil, io.Discard, io.Discard, nil)
	}
	ts.logs.waitFor(t, "refused")

	// A client that skips the handshake and sends a request at once is
	// refused too, and nothing runs.
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	hello := make([]byte, len(greeting)+nonceSize)
	if _, err := io.ReadFull(conn, hello); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, nonceSize+32)
	copy(junk, `{"argv":["touch","`+marker+`"]}`)
	conn.Write(junk)
	ans, _ := io.ReadAll(conn)
	conn.Close()
	if string(ans) != string([]byte{authRefused}) {
		t.Fatalf("a forged handshake was answered %q", ans)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("a command ran without the key (%v)", err)
	}

	// The client checks the server too: one without the key is not trusted.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		// A server of another job: a right challenge, a proof under its key.
		imposter := &Server{Key: Key("another-token")}
		imposter.handshake(conn)
	}()
	if _, err := Dial(context.Background(), l.Addr().String(), testKey); !errors.Is(err, ErrAuth) {
		t.Fatalf("a server without the key: %v, want ErrAuth", err)
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	for _, c := range []struct {
		name    string
		req     Request
		code    int
		wantErr string
	}{
		{"success", sh("exit 0"), 0, ""},
		{"failure", sh("exit 3"), 3, ""},
		{"killed by a signal", sh("kill -TERM $$"), 128 + int(syscall.SIGTERM), ""},
		{"not found", Request{Argv: []string{"no-such-program-here"}}, 127, "command not found"},
		{"no command", Request{}, 126, "no command given"},
		{"bad working directory", Request{Argv: []string{"true"}, Dir: "/no/such/dir"}, 127, "no such file"},
		{"unknown op", Request{Op: "dance"}, 126, "unknown op"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, _, err := run(t, ts, c.req, nil)
			if code != c.code {
				t.Errorf("exit code %d, want %d (err %v)", code, c.code, err)
			}
			if (err == nil) != (c.wantErr == "") || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want one saying %q", err, c.wantErr)
			}
		})
	}
}

func TestStdioEnvAndDir(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	code, out, errOut, err := run(t, ts, sh(`read line; echo "in=$line"; echo "err" >&2; echo "$BASE $ADDED"; pwd`), strings.NewReader("hello\n"))
	if err != nil || code != 0 {
		t.Fatalf("code %d, err %v", code, err)
	}
	dir := t.TempDir()
	req := sh(`echo "$BASE $ADDED"; pwd`)
	req.Env, req.Dir = []string{"ADDED=added", "BASE=replaced"}, dir
	code, out2, _, err := run(t, ts, req, nil)
	if err != nil || code != 0 {
		t.Fatalf("code %d, err %v", code, err)
	}
	if !strings.HasPrefix(out, "in=hello\nbase \n") || errOut != "err\n" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	if want := "replaced added\n" + dir + "\n"; out2 != want {
		t.Errorf("stdout %q, want %q", out2, want)
	}

	// More than a frame holds, both ways, and the command sees stdin end.
	big := make([]byte, 3<<20)
	rand.Read(big)
	code, out, errOut, err = run(t, ts, sh("cat; cat /dev/null >&2; echo done >&2"), bytes.NewReader(big))
	if err != nil || code != 0 {
		t.Fatalf("cat: code %d, err %v", code, err)
	}
	if out != string(big) || errOut != "done\n" {
		t.Errorf("cat returned %d bytes (equal: %v), stderr %q", len(out), out == string(big), errOut)
	}
}

func TestSignalForwarding(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	for _, c := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGTERM, "TERM"}, {syscall.SIGINT, "INT"}} {
		sig, name := c.sig, c.name
		t.Run(name, func(t *testing.T) {
			c, err := Dial(context.Background(), ts.addr, testKey)
			if err != nil {
				t.Fatal(err)
			}
			out := newBuffer()
			signals := make(chan os.Signal, 1)
			type result struct {
				code int
				err  error
			}
			res := make(chan result, 1)
			go func() {
				code, err := c.Run(Request{Argv: []string{"bash", "-c", `trap 'echo got; exit 7' ` + name + `; echo ready; sleep 100 & wait`}},
					nil, out, io.Discard, signals)
				res <- result{code, err}
			}()
			out.waitFor(t, "ready")
			signals <- sig
			r := <-res
			if r.err != nil || r.code != 7 || !strings.Contains(out.String(), "got") {
				t.Fatalf("code %d, err %v, output %q", r.code, r.err, out.String())
			}
		})
	}

	// A client that dies (SIGKILL cannot be forwarded) leaves its
	// connection: the command's group is killed.
	c, err := Dial(context.Background(), ts.addr, testKey)
	if err != nil {
		t.Fatal(err)
	}
	out := newBuffer()
	go c.Run(sh(`sleep 100 & echo "$$ $!"; wait`), nil, out, io.Discard, nil)
	out.waitFor(t, "\n")
	var pids []int
	for _, f := range strings.Fields(out.String()) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, n)
	}
	c.Close()
	for _, pid := range pids {
		clustertest.Eventually(t, 20*time.Second, fmt.Sprintf("process %d ended after its client went away", pid), func() error {
			if syscall.Kill(pid, 0) == nil {
				return errors.New("still runs")
			}
			return nil
		})
	}
}

func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial(context.Background(), ts.addr, testKey)
			if err != nil {
				errs <- err
				return
			}
			var out bytes.Buffer
			// Each waits on its stdin so that all run at once.
			code, err := c.Run(Request{Argv: []string{"sh", "-c", `read x; echo "$N $x"; exit $N`}, Env: []string{"N=" + strconv.Itoa(i)}},
				strings.NewReader(fmt.Sprintf("s%d\n", i)), &out, io.Discard, nil)
			if err != nil || code != i || out.String() != fmt.Sprintf("%d s%d\n", i, i) {
				errs <- fmt.Errorf("session %d: code %d, err %v, out %q", i, code, err, out.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPingAndShutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	if _, err := Ping(context.Background(), ts.addr, testKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Ping(context.Background(), ts.addr, Key("x")); !errors.Is(err, ErrAuth) {
		t.Fatalf("ping with the wrong key: %v", err)
	}
	// A command still running when the server shuts down is killed.
	c, err := Dial(context.Background(), ts.addr, testKey)
	if err != nil {
		t.Fatal(err)
	}
	out := newBuffer()
	res := make(chan int, 1)
	go func() {
		code, _ := c.Run(sh("echo ready; sleep 100"), nil, out, io.Discard, nil)
		res <- code
	}()
	out.waitFor(t, "ready")
	if err := Shutdown(context.Background(), ts.addr, testKey); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatalf("Serve after a shutdown: %v", err)
		}
		ts.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after a shutdown")
	}
	if code := <-res; code != 128+int(syscall.SIGKILL) {
		t.Errorf("the running command ended with %d, want killed", code)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Error("the server still accepts connections")
	}
}

func TestParseRSH(t *testing.T) {
	for _, c := range []struct {
		args    []string
		host    string
		port    int
		command string
		err     string
	}{
		{[]string{"h1", " orted", "-mca", "ess", `"env"`}, "h1", DefaultPort, ` orted -mca ess "env"`, ""},
		{[]string{"-x", "-n", "h1.job", "true"}, "h1.job", DefaultPort, "true", ""},
		{[]string{"-xT", "-p", "2300", "-l", "root", "-o", "StrictHostKeyChecking=no", "root@h2", "echo", "hi"}, "h2", 2300, "echo hi", ""},
		{[]string{"-p2301", "h3", "x"}, "h3", 2301, "x", ""},
		{[]string{"-p", "0", "h", "x"}, "", 0, "", "want a port number"},
		{[]string{"-Z", "h", "x"}, "", 0, "", "unknown option -Z"},
		{[]string{"-xZ", "h", "x"}, "", 0, "", "unknown flag -Z"},
		{[]string{"-p"}, "", 0, "", "needs a value"},
		{[]string{"-x"}, "", 0, "", "no host given"},
		{[]string{"h1"}, "", 0, "", "login session is not supported"},
	} {
		host, port, command, err := parseRSH(c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one saying %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || host != c.host || port != c.port || command != c.command {
			t.Errorf("%q: %q %d %q %v, want %q %d %q", c.args, host, port, command, err, c.host, c.port, c.command)
		}
	}
}

func TestRSH(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testKey)
	host, port, err := net.SplitHostPort(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvKey: hex.EncodeToString(testKey)}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	// As ssh: the words are one shell command line on the remote side.
	code := RSH(context.Background(), []string{"-x", "-p", port, host, "echo", `"a  b"`, "$BASE;", "exit", "5"}, getenv, strings.NewReader(""), &out, &errOut, nil)
	if code != 5 || out.String() != "a  b base\n" {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}

	env[EnvKey] = hex.EncodeToString(Key("other"))
	errOut.Reset()
	if code := RSH(context.Background(), []string{"-p", port, host, "true"}, getenv, nil, io.Discard, &errOut, nil); code != exitRSH || !strings.Contains(errOut.String(), "authentication failed") {
		t.Errorf("wrong key: code %d, stderr %q", code, errOut.String())
	}
	delete(env, EnvKey)
	errOut.Reset()
	if code := RSH(context.Background(), []string{"-p", port, host, "true"}, getenv, nil, io.Discard, &errOut, nil); code != exitRSH || !strings.Contains(errOut.String(), EnvKey+" is not set") {
		t.Errorf("no key: code %d, stderr %q", code, errOut.String())
	}
	env[EnvKey] = "zz-not-hex"
	errOut.Reset()
	if code := RSH(context.Background(), []string{"-p", port, host, "true"}, getenv, nil, io.Discard, &errOut, nil); code != exitRSH || strings.Contains(errOut.String(), "zz-not-hex") {
		t.Errorf("bad key: code %d, stderr %q (the value must not be shown)", code, errOut.String())
	}
}
