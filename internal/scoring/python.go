package scoring

import (
	"bytes"
	"context"
	"crypto/x509"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// serverPy is the scoring server; it runs with the image's Python.
//
//go:embed server.py
var serverPy []byte

// serverFile is where it is written under the root.
const serverFile = "scoring_server.py"

// writeServer writes the server under root and returns its path.
func writeServer(root string) (string, error) {
	dir := filepath.Join(root, dirServer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, serverFile)
	if err := os.WriteFile(p, serverPy, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// findPython is the image's python3, else its python, on pathList (the
// pod's PATH).
func findPython(pathList string) (string, error) {
	for _, name := range []string{"python3", "python"} {
		for _, dir := range filepath.SplitList(pathList) {
			if dir == "" || !filepath.IsAbs(dir) {
				continue
			}
			f := filepath.Join(dir, name)
			if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
				return f, nil
			}
		}
	}
	return "", fmt.Errorf("%w (PATH=%s)", errNoPython, pathList)
}

func certPool(pemData []byte) bool {
	return x509.NewCertPool().AppendCertsFromPEM(pemData)
}

// runServer runs the server to its end and returns its exit code (128+N
// for a signal N). Its stdout and stderr go to out, in order. When ctx
// ends, the server gets SIGTERM and has until it exits: the kubelet's
// grace period bounds that, not the wrapper.
func runServer(ctx context.Context, python string, args []string, dir string, env []string, out io.Writer) (int, error) {
	r, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(python, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = pw, pw
	// Its own group: a terminal's ^C reaches the wrapper alone, which
	// passes it on as SIGTERM; and what the script leaves running can be
	// ended with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close() // the child has its own copy
	if err != nil {
		r.Close()
		return 0, err
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		// An error here is the pipe closed below: nothing more to read.
		io.Copy(out, r)
	}()
	exited := make(chan struct{})
	go func() {
		// Wait's error is the exit status, which ProcessState has.
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		// ESRCH: it has just ended.
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}
	// What the script left running in the group would die with the
	// container; end it now so that it lets go of the pipe.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		r.Close() // something outside the group holds the pipe
		<-drained
	}
	r.Close()
	if cmd.ProcessState == nil {
		return 0, fmt.Errorf("%s: no exit status", python)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// tailBuffer keeps the end of the server's output, for the termination
// message of a server that died.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailKeep = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailKeep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}

// lastLines is the end of b: its last n lines, at most maxBytes, valid
// UTF-8.
func lastLines(b []byte, n, maxBytes int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "\n")
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
