package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
	remotecommandserver "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"outpost.dev/outpost/internal/container"
)

// Streams stay open while idle for as long as the kubelet's default
// (--streaming-connection-idle-timeout).
const streamIdleTimeout = 4 * time.Hour

// routeStreams adds the kubelet's streaming endpoints that the apiserver
// proxies for `kubectl exec`, `attach` and `port-forward`, with the kubelet's
// paths (with and without the pod's UID) and query parameters. The protocols
// (SPDY and WebSocket) are the kubelet's own library.
func (a *Agent) routeStreams(mux *http.ServeMux) {
	for _, method := range []string{"GET", "POST"} {
		for _, suffix := range []string{"{namespace}/{pod}/{container}", "{namespace}/{pod}/{uid}/{container}"} {
			mux.HandleFunc(method+" /exec/"+suffix, a.serveExec)
			mux.HandleFunc(method+" /attach/"+suffix, a.serveAttach)
		}
		mux.HandleFunc(method+" /portForward/{namespace}/{pod}", a.servePortForward)
		mux.HandleFunc(method+" /portForward/{namespace}/{pod}/{uid}", a.servePortForward)
	}
}

// streamTarget finds the pod (and its UID when the path names one) of a
// streaming request, answering 404 as the kubelet does when it is not here.
func (a *Agent) streamTarget(rw http.ResponseWriter, r *http.Request) *podWorker {
	w := a.worker(r.PathValue("namespace"), r.PathValue("pod"))
	if w == nil || (r.PathValue("uid") != "" && types.UID(r.PathValue("uid")) != w.ref.UID) {
		http.Error(rw, fmt.Sprintf("pod %s/%s does not exist on node %s", r.PathValue("namespace"), r.PathValue("pod"), a.cfg.Name), http.StatusNotFound)
		return nil
	}
	return w
}

func (a *Agent) serveExec(rw http.ResponseWriter, r *http.Request) {
	a.serveRemoteCommand(rw, r, func(st streams, w *podWorker, opts *remotecommandserver.Options) {
		remotecommandserver.ServeExec(rw, r, st, w.name, w.ref.UID, r.PathValue("container"), r.URL.Query()["command"],
			opts, streamIdleTimeout, remotecommandconsts.DefaultStreamCreationTimeout, remotecommandconsts.SupportedStreamingProtocols)
	})
}

func (a *Agent) serveAttach(rw http.ResponseWriter, r *http.Request) {
	a.serveRemoteCommand(rw, r, func(st streams, w *podWorker, opts *remotecommandserver.Options) {
		remotecommandserver.ServeAttach(rw, r, st, w.name, w.ref.UID, r.PathValue("container"),
			opts, streamIdleTimeout, remotecommandconsts.DefaultStreamCreationTimeout, remotecommandconsts.SupportedStreamingProtocols)
	})
}

// serveRemoteCommand reads an exec or attach request's options and its pod,
// then hands both to serve.
func (a *Agent) serveRemoteCommand(rw http.ResponseWriter, r *http.Request, serve func(streams, *podWorker, *remotecommandserver.Options)) {
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w := a.streamTarget(rw, r)
	if w == nil {
		return
	}
	serve(streams{w}, w, opts)
}

func (a *Agent) servePortForward(rw http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w := a.streamTarget(rw, r)
	if w == nil {
		return
	}
	portforward.ServePortForward(rw, r, streams{w}, w.name, w.ref.UID, opts,
		streamIdleTimeout, remotecommandconsts.DefaultStreamCreationTimeout, portforward.SupportedProtocols)
}

// streams runs the streaming requests of one pod.
type streams struct{ w *podWorker }

func (st streams) ExecInContainer(ctx context.Context, _ string, _ types.UID, name string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	code, err := st.w.execIn(ctx, name, cmd, in, out, errOut, tty, resize)
	if err != nil {
		return err
	}
	if code != 0 {
		// The library reports an ExitError's code to kubectl, which exits with it.
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (st streams) AttachContainer(_ context.Context, _ string, _ types.UID, name string, _ io.Reader, _, _ io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	// A container's stdout and stderr go to its log file and its stdin is
	// /dev/null: there is no live stdio to attach to.
	return fmt.Errorf("attach to container %s: not supported on the outpost node (its containers run without a terminal or stdin); use `kubectl logs -f` for its output or `kubectl exec -it` for a shell", name)
}

func (st streams) PortForward(ctx context.Context, _ string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	st.w.mu.Lock()
	ip := st.w.ip
	st.w.mu.Unlock()
	if ip == "" {
		return fmt.Errorf("pod %s has no IP yet", st.w.name)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("port %d of pod %s: %w", port, st.w.name, err)
	}
	defer conn.Close()
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		// The client is done sending; the server may still answer.
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		sent <- err
	}()
	if _, err := io.Copy(stream, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("port %d of pod %s: %w", port, st.w.name, err)
	}
	return nil
}

// running returns the running process of a container and its root.
func (w *podWorker) running(name string) (*container.Process, string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range append(append([]*ctrState{}, w.initStates...), w.states...) {
		if s.spec.Name != name {
			continue
		}
		if s.proc == nil {
			return nil, "", fmt.Errorf("container %s of pod %s is not running", name, w.name)
		}
		return s.proc, w.ctrRoot(name), nil
	}
	return nil, "", fmt.Errorf("container %s is not valid for pod %s", name, w.name)
}

// execIn runs a command inside a running container (its filesystem view, PID
// namespace, env and workingDir) and returns its exit code. With tty, stdin
// and stdout are a terminal and errOut is unused, as with any runtime.
func (w *podWorker) execIn(ctx context.Context, name string, argv []string, in io.Reader, out, errOut io.Writer, tty bool, resize <-chan remotecommand.TerminalSize) (int, error) {
	proc, root, err := w.running(name)
	if err != nil {
		return 0, err
	}
	return runIn(ctx, w.a.cfg.Outpost, proc, root, argv, in, out, errOut, tty, resize)
}

func runIn(ctx context.Context, bin string, proc *container.Process, root string, argv []string, in io.Reader, out, errOut io.Writer, tty bool, resize <-chan remotecommand.TerminalSize) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !tty {
		var stdin io.Reader
		if in != nil {
			// Copied by us rather than by exec: Wait would otherwise wait for
			// the client to close its stdin even after the command ended.
			r, pw, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			defer r.Close()
			go func() {
				_, _ = io.Copy(pw, in)
				pw.Close()
			}()
			stdin = r
		}
		cmd, err := container.StartExec(ctx, bin, proc, root, argv, false, stdin, out, errOut)
		if err != nil {
			return 0, err
		}
		return container.ExitCode(cmd.Wait())
	}

	master, term, err := container.OpenPTY()
	if err != nil {
		return 0, err
	}
	defer master.Close()
	cmd, err := container.StartExec(ctx, bin, proc, root, argv, true, term, term, term)
	term.Close() // the command holds it now; the master reads EOF (EIO) once it is gone
	if err != nil {
		return 0, err
	}
	go func() {
		for {
			select {
			case size, ok := <-resize:
				if !ok {
					return
				}
				// A size the terminal refuses leaves the old one: the
				// session goes on, as a terminal emulator's would.
				_ = container.ResizePTY(master, size.Width, size.Height)
			case <-ctx.Done():
				return
			}
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(master, in) }()
	}
	var output sync.WaitGroup
	if out != nil {
		output.Add(1)
		go func() {
			defer output.Done()
			// Ends with EIO when the last holder of the terminal closes it,
			// or at the deadline set below.
			_, _ = io.Copy(out, master)
		}()
	}
	code, err := container.ExitCode(cmd.Wait())
	// What the command wrote before exiting is still in the terminal; a
	// process it left behind may hold the terminal open for longer.
	_ = master.SetReadDeadline(time.Now().Add(2 * time.Second))
	output.Wait()
	return code, err
}
