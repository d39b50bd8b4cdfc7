package remoteexec

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server timings; tests shorten them.
var (
	handshakeTimeout = 10 * time.Second
	// drainTimeout bounds reading what a command's leftovers still write
	// once it has exited (a daemon that kept the pipes open).
	drainTimeout = 2 * time.Second
)

// Server runs the commands of authenticated sessions.
type Server struct {
	// Key authenticates clients (Key of the job's credential).
	Key []byte
	// Env is the environment of every command, before a Request's Env.
	Env []string
	// Dir is the working directory of a Request without one.
	Dir string
	// Logf reports refused connections and failed sessions; nil: nothing.
	Logf func(format string, args ...any)

	mu       sync.Mutex
	sessions map[*session]struct{}
	wg       sync.WaitGroup
}

// Serve accepts sessions on l until a client asks for a shutdown (nil) or
// ctx ends (ctx.Err()); it closes l. When it returns, the commands of
// sessions still running have been killed.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if len(s.Key) == 0 {
		l.Close()
		return errors.New("remote exec: the server has no key")
	}
	shutdown := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(shutdown) }) }
	go func() {
		select {
		case <-ctx.Done():
		case <-shutdown:
		}
		l.Close()
	}()
	var err error
	for {
		conn, aerr := l.Accept()
		if aerr != nil {
			select {
			case <-shutdown:
			case <-ctx.Done():
				err = ctx.Err()
			default:
				var ne net.Error
				if errors.As(aerr, &ne) && ne.Timeout() {
					continue
				}
				err = aerr
				stop()
			}
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(conn, stop)
		}()
	}
	s.mu.Lock()
	for ss := range s.sessions {
		ss.kill()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// handshake authenticates the client and returns the session's framer.
func (s *Server) handshake(conn net.Conn) (*framer, error) {
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	sn, err := newNonce()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append([]byte(greeting), sn...)); err != nil {
		return nil, err
	}
	buf := make([]byte, nonceSize+len(proof(s.Key, clientLabel, nil, nil)))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}
	cn, got := buf[:nonceSize], buf[nonceSize:]
	if !hmac.Equal(got, proof(s.Key, clientLabel, sn, cn)) {
		conn.Write([]byte{authRefused})
		return nil, ErrAuth
	}
	if _, err := conn.Write(append([]byte{authOK}, proof(s.Key, serverLabel, sn, cn)...)); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return newFramer(conn, s.Key, sn, cn, true), nil
}

func (s *Server) handle(conn net.Conn, shutdown func()) {
	defer conn.Close()
	f, err := s.handshake(conn)
	if err != nil {
		s.logf("remote exec: connection from %s refused: %v", conn.RemoteAddr(), err)
		return
	}
	typ, payload, err := f.read()
	if err != nil {
		s.logf("remote exec: session from %s: %v", conn.RemoteAddr(), err)
		return
	}
	var req Request
	if typ != frameRequest {
		err = fmt.Errorf("the session began with frame type %d, not a request", typ)
	} else if uerr := json.Unmarshal(payload, &req); uerr != nil {
		err = fmt.Errorf("the request: %w", uerr)
	}
	if err != nil {
		s.logf("remote exec: session from %s: %v", conn.RemoteAddr(), err)
		s.exit(f, exitStatus{Code: 126, Error: err.Error()})
		return
	}
	switch req.Op {
	case OpPing:
		s.exit(f, exitStatus{})
	case OpShutdown:
		s.exit(f, exitStatus{})
		shutdown()
	case OpExec:
		s.exec(conn, f, req)
	default:
		s.exit(f, exitStatus{Code: 126, Error: fmt.Sprintf("unknown op %q: want %q, %q or none", req.Op, OpPing, OpShutdown)})
	}
}

func (s *Server) exit(f *framer, st exitStatus) {
	b, err := json.Marshal(st)
	if err != nil {
		panic(err) // two plain fields always encode
	}
	if err := f.write(frameExit, b); err != nil {
		s.logf("remote exec: sending the exit status: %v", err)
	}
}

// session is one running command.
type session struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	done bool
}

// signal sends sig to the command's process group while it runs.
func (ss *session) signal(sig syscall.Signal) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.done {
		// ESRCH: the group is gone already.
		syscall.Kill(-ss.cmd.Process.Pid, sig)
	}
}

func (ss *session) kill() { ss.signal(syscall.SIGKILL) }

func (s *Server) exec(conn net.Conn, f *framer, req Request) {
	if len(req.Argv) == 0 {
		s.exit(f, exitStatus{Code: 126, Error: "no command given"})
		return
	}
	env := mergeEnv(s.Env, req.Env)
	dir := req.Dir
	if dir == "" {
		dir = s.Dir
	}
	path, err := lookPath(req.Argv[0], env)
	if err != nil {
		s.exit(f, exitStatus{Code: 127, Error: err.Error()})
		return
	}
	cmd := exec.Command(path, req.Argv[1:]...)
	cmd.Args[0] = req.Argv[0]
	cmd.Env, cmd.Dir = env, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.exit(f, exitStatus{Code: 126, Error: err.Error()})
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		s.exit(f, exitStatus{Code: 126, Error: err.Error()})
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		s.exit(f, exitStatus{Code: 126, Error: err.Error()})
		return
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		code := 126
		if errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		s.exit(f, exitStatus{Code: code, Error: err.Error()})
		return
	}
	ss := &session{cmd: cmd}
	s.mu.Lock()
	if s.sessions == nil {
		s.sessions = map[*session]struct{}{}
	}
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()

	// The client's side: stdin and signals, until the connection ends.
	// Lost before the exit status went, it kills the command: the client
	// was killed, or can no longer tell it anything.
	finished := make(chan struct{})
	go func() {
		defer stdin.Close()
		for {
			typ, payload, err := f.read()
			if err != nil {
				select {
				case <-finished:
				default:
					if !errors.Is(err, io.EOF) {
						s.logf("remote exec: session from %s: %v", conn.RemoteAddr(), err)
					}
					ss.kill()
				}
				return
			}
			switch typ {
			case frameStdin:
				if stdin != nil {
					if _, err := stdin.Write(payload); err != nil {
						// The command closed its stdin: what comes next has
						// no reader, as with a pipe.
						stdin.Close()
						stdin = nil
					}
				}
			case frameStdinEOF:
				if stdin != nil {
					stdin.Close()
					stdin = nil
				}
			case frameSignal:
				if len(payload) == 1 && payload[0] > 0 && payload[0] < 65 {
					ss.signal(syscall.Signal(payload[0]))
				}
			}
		}
	}()

	var drained sync.WaitGroup
	pump := func(r *os.File, typ byte) {
		defer drained.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if werr := f.write(typ, buf[:n]); werr != nil {
					ss.kill()
					// Keep reading so the command never blocks on a full pipe.
					io.Copy(io.Discard, r)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	drained.Add(2)
	go pump(outR, frameStdout)
	go pump(errR, frameStderr)

	werr := cmd.Wait()
	ss.mu.Lock()
	ss.done = true
	ss.mu.Unlock()
	// What the command left running goes on, as after an ssh session: a
	// daemon (orted --daemonize forks, and its child calls setsid only
	// later, so the group must not be killed now). Its pipes are let go
	// of after drainTimeout.
	pipesDone := make(chan struct{})
	go func() { drained.Wait(); close(pipesDone) }()
	select {
	case <-pipesDone:
	case <-time.After(drainTimeout):
		outR.Close()
		errR.Close()
		<-pipesDone
	}
	outR.Close()
	errR.Close()
	st := exitStatus{Code: exitCode(cmd.ProcessState)}
	if cmd.ProcessState == nil {
		st = exitStatus{Code: 1, Error: werr.Error()}
	}
	close(finished)
	s.exit(f, st)
}

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return 1
}

// mergeEnv is base with add's KEY=VALUE pairs replacing or added.
func mergeEnv(base, add []string) []string {
	out := make([]string, 0, len(base)+len(add))
	idx := map[string]int{}
	for _, list := range [][]string{base, add} {
		for _, kv := range list {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				continue
			}
			if i, seen := idx[k]; seen {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// lookPath finds name in the PATH of env (not the server's own).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found (PATH=%s)", name, path)
}
