package jobrunner

// An MPI job (distribution.type: mpi) runs as the MPI Operator runs one,
// with Outpost's remote-exec server in place of sshd: every instance,
// once its code and inputs are in, serves remote exec on mpiPort
// (internal/remoteexec, keyed by the job's credential). Instance 0 is the
// launcher as well: it waits until every instance's server answers, writes
// a hostfile of the instances' stable names with process_count_per_instance
// slots each, and runs mpirun across them with `outpost job rsh` as its rsh
// agent; Open MPI starts the ranks. The launcher's own server is there for
// an mpirun that does not take instance 0's name for its own host (the
// stable name is not the pod's hostname) and reaches it by rsh too.
//
// mpirun's --tag-output lines are split by rank into
// user_logs/std_log_process_<rank>.txt (std_log.txt for a world of one),
// untagged lines (mpirun's own messages) going to rank 0's. When mpirun
// has ended, the launcher tells every other instance's server to shut
// down; the workers then upload their outputs and exit 0, so that a job
// whose mpirun succeeded has every pod Succeeded. The job's exit code is
// mpirun's.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/jobmetrics"
	"outpost.dev/outpost/internal/remoteexec"
)

// MPI launch settings; tests change them.
var (
	mpiPort = remoteexec.DefaultPort
	// mpiListen is where an instance's server listens: every address,
	// which in a pod is the pod's (on the local node, the pod's own
	// loopback address, the node rewrites such binds so).
	mpiListen = func(host string, port int) string { return net.JoinHostPort("", strconv.Itoa(port)) }
	// mpiWaitFor bounds the launcher's wait for the other instances, which
	// download the code and the inputs before they serve.
	mpiWaitFor       = 10 * time.Minute
	mpiProgressEvery = 15 * time.Second
	mpiShutdownFor   = time.Minute
	// mpiAgent is the rsh agent mpirun runs: this binary.
	mpiAgent = func() (string, error) {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(exe, " \t\n") {
			return "", fmt.Errorf("the wrapper's path %q has a space, which Open MPI's plm_rsh_agent cannot hold", exe)
		}
		return exe + " job rsh", nil
	}
)

// mpiRankScript starts a rank's command as the wrapper starts a process's:
// `shell -c command`, with AZUREML_PROCESS_NAME from the rank Open MPI
// gave it, its metrics file named after that rank, and without the
// remote-exec key that mpirun's environment holds for its agent.
const mpiRankScript = `unset ` + remoteexec.EnvKey + `; export AZUREML_PROCESS_NAME="rank_${OMPI_COMM_WORLD_RANK}" ` +
	jobmetrics.EnvFile + `="$` + jobmetrics.EnvDir + `/rank_${OMPI_COMM_WORLD_RANK}.jsonl"; exec "$0" -c "$1"`

// mpiRun is what runMPI needs of the prepared job.
type mpiRun struct {
	shell   string
	command string
	env     []string // the command's environment (processEnv of local 0)
	store   *artifacts.Client
	plan    *plan
	stdout  io.Writer
}

// mpiEnv is the environment of what mpirun and the servers start: the
// command's, less the per-process variables that Open MPI sets per rank.
func mpiEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return strings.HasPrefix(k, "OMPI_COMM_WORLD_") || k == "AZUREML_PROCESS_NAME" || k == jobmetrics.EnvFile
	})
}

func (j *job) runMPI(ctx context.Context, m *mpiRun) int {
	cfg := j.cfg
	key := remoteexec.Key(cfg.token)
	env := mpiEnv(m.env)
	wd := filepath.Join(cfg.root, dirWD)
	l, err := net.Listen("tcp", mpiListen(cfg.world.Host(cfg.instance), mpiPort))
	if err != nil {
		return j.fail(fmt.Errorf("the remote-exec server of this instance: %w", err))
	}
	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	srv := &remoteexec.Server{Key: key, Env: env, Dir: wd, Logf: j.warn}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, l) }()
	if cfg.instance != 0 {
		return j.mpiWorker(ctx, m, served)
	}
	code := j.mpiLaunch(ctx, m, key, env)
	stopServer()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		j.warn("the remote-exec server of this instance: %v", err)
	}
	return code
}

// mpiWorker serves until the launcher says mpirun is done, then uploads
// this instance's outputs.
func (j *job) mpiWorker(ctx context.Context, m *mpiRun, served <-chan error) int {
	// The ranks that mpirun starts here write their metrics here.
	metrics := newMetricShipper(j.api, filepath.Join(j.cfg.root, dirMetrics), j.warn)
	err := <-served
	if ctx.Err() != nil {
		if merr := metrics.close(time.Now().Add(flushOnCancel)); merr != nil {
			j.warn("%v", merr)
		}
		j.terminate("canceled: the job was stopped")
		return exitCanceled
	}
	if err != nil {
		return j.fail(errors.Join(fmt.Errorf("the remote-exec server of this instance: %w", err), metrics.close(time.Now().Add(retryWindow))))
	}
	if err := errors.Join(metrics.close(time.Now().Add(retryWindow)), upload(ctx, m.store, m.plan, j.cfg.root)); err != nil {
		return j.fail(err)
	}
	return 0
}

// mpiLaunch is instance 0's part: wait for the servers, run mpirun, shut
// the servers down, ship the logs and the outputs.
func (j *job) mpiLaunch(ctx context.Context, m *mpiRun, key []byte, env []string) int {
	cfg := j.cfg
	addrs := make([]string, cfg.instances)
	for i := range addrs {
		addrs[i] = net.JoinHostPort(cfg.world.Host(i), strconv.Itoa(mpiPort))
	}
	shutdownWorkers := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mpiShutdownFor)
		defer cancel()
		if err := shutdownServers(sctx, addrs[1:], key); err != nil {
			j.warn("%v (they end when the job's pods are deleted)", err)
		}
	}
	loopback, err := waitServers(ctx, addrs, key, mpiWaitFor, mpiProgressEvery, j.warn)
	if err != nil {
		if ctx.Err() == nil {
			shutdownWorkers()
		}
		return j.failOrCanceled(ctx, err)
	}
	mpirun := lookPath("mpirun", envValue(env, "PATH"))
	if mpirun == "" {
		shutdownWorkers()
		return j.fail(fmt.Errorf("mpirun is not on the image's PATH (%s): an MPI job needs Open MPI in its image", envValue(env, "PATH")))
	}
	agent, err := mpiAgent()
	if err != nil {
		shutdownWorkers()
		return j.fail(err)
	}
	if mpiPort != remoteexec.DefaultPort {
		agent += " -p " + strconv.Itoa(mpiPort)
	}
	hostfile := filepath.Join(cfg.root, "mpi", "hostfile")
	if err := os.MkdirAll(filepath.Dir(hostfile), 0o755); err != nil {
		shutdownWorkers()
		return j.fail(err)
	}
	if err := os.WriteFile(hostfile, []byte(hostfileText(cfg.world.Hosts, cfg.perInstance)), 0o644); err != nil {
		shutdownWorkers()
		return j.fail(fmt.Errorf("writing the hostfile: %w", err))
	}

	// One log per rank, fed by the tagged lines of mpirun's output.
	size := cfg.world.Size()
	con := &console{w: m.stdout, warn: j.warn}
	var logs []*shipper
	closeLogs := func(deadline time.Time) error {
		var errs []error
		for _, s := range logs {
			errs = append(errs, s.close(deadline))
		}
		return errors.Join(errs...)
	}
	ranks := make([]io.Writer, size)
	for r := range size {
		file := "user_logs/std_log.txt"
		if size > 1 {
			file = fmt.Sprintf("user_logs/std_log_process_%d.txt", r)
		}
		s, err := newShipper(j.api, cfg.root, file, j.warn)
		if err != nil {
			if cerr := closeLogs(time.Now()); cerr != nil {
				j.warn("%v", cerr)
			}
			shutdownWorkers()
			return j.fail(fmt.Errorf("opening the log %s: %w", file, err))
		}
		logs, ranks[r] = append(logs, s), s
	}
	tail := &tailBuffer{}
	demux := &rankDemux{ranks: ranks, console: con.write, tail: tail}

	args := mpirunArgs(mpirunOptions{np: size, hostfile: hostfile, agent: agent, loopback: loopback, wd: filepath.Join(cfg.root, dirWD)},
		m.shell, m.command)
	cmd := exec.Command(mpirun, args...)
	cmd.Env = append(slices.Clone(env), remoteexec.EnvKey+"="+hex.EncodeToString(key))
	cmd.Dir = filepath.Join(cfg.root, dirWD)
	metrics := newMetricShipper(j.api, filepath.Join(cfg.root, dirMetrics), j.warn)
	j.phase(ctx, api.JobRunning)
	code, canceled, err := runMPIRun(ctx, cmd, demux)
	demux.close()
	if err != nil {
		if cerr := errors.Join(closeLogs(time.Now().Add(flushOnCancel)), metrics.close(time.Now().Add(flushOnCancel))); cerr != nil {
			j.warn("%v", cerr)
		}
		shutdownWorkers()
		return j.fail(fmt.Errorf("starting mpirun: %w", err))
	}
	deadline := time.Now().Add(retryWindow)
	if canceled {
		deadline = time.Now().Add(flushOnCancel)
	}
	logErr := errors.Join(closeLogs(deadline), metrics.close(deadline))
	if canceled {
		if logErr != nil {
			j.warn("%v", logErr)
		}
		if code == 0 {
			code = exitCanceled
		}
		j.terminate(fmt.Sprintf("canceled: mpirun was stopped (exit code %d)", code))
		return code
	}
	shutdownWorkers()

	j.phase(ctx, api.JobFinalizing)
	upErr := upload(ctx, m.store, m.plan, cfg.root)
	if code != 0 {
		for _, err := range []error{logErr, upErr} {
			if err != nil {
				j.warn("%v", err)
			}
		}
		j.terminate(failureMessage(code, tail.bytes()))
		return code
	}
	if err := errors.Join(logErr, upErr); err != nil {
		return j.fail(err)
	}
	return 0
}

// runMPIRun runs mpirun to its end, its output (stdout and stderr in one
// pipe, in order) to out. When ctx ends, mpirun gets SIGTERM (it stops the
// ranks everywhere), then its group SIGKILL after killGrace.
func runMPIRun(ctx context.Context, cmd *exec.Cmd, out io.Writer) (code int, canceled bool, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, false, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return 0, false, err
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		// An error is the pipe closed below, once mpirun has ended.
		io.Copy(out, r)
	}()
	exited := make(chan struct{})
	go func() {
		// Wait's error is the exit status, which ProcessState has.
		cmd.Wait()
		close(exited)
	}()
	var kill <-chan time.Time
	done := ctx.Done()
	for waiting := true; waiting; {
		select {
		case <-exited:
			waiting = false
		case <-done:
			done, canceled = nil, true
			cmd.Process.Signal(syscall.SIGTERM)
			kill = time.After(killGrace)
		case <-kill:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	// What mpirun left in its group (agents) holds the pipe: end it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		r.Close()
		<-drained
	}
	r.Close()
	return exitCode(cmd.ProcessState), canceled, nil
}

// waitServers waits until the server at every addr answers, up to limit,
// saying every progressEvery who is still awaited. It reports whether
// every server was reached on a loopback address (the local node).
func waitServers(ctx context.Context, addrs []string, key []byte, limit, progressEvery time.Duration, warn func(string, ...any)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	type answer struct {
		i    int
		addr net.Addr
	}
	answers := make(chan answer, len(addrs))
	var mu sync.Mutex
	lastErr := make([]error, len(addrs))
	for i, a := range addrs {
		go func() {
			for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				ra, err := remoteexec.Ping(pctx, a, key)
				pcancel()
				if err == nil {
					answers <- answer{i, ra}
					return
				}
				mu.Lock()
				lastErr[i] = err
				mu.Unlock()
				if errors.Is(err, remoteexec.ErrAuth) {
					// Another job's server, or a stranger's: no waiting cures it.
					answers <- answer{i, nil}
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	answered := make([]bool, len(addrs))
	loopback := true
	pending := func() string {
		mu.Lock()
		defer mu.Unlock()
		var s []string
		for i, ok := range answered {
			if !ok {
				msg := fmt.Sprintf("instance %d (%s)", i, addrs[i])
				if lastErr[i] != nil {
					msg += ": " + lastErr[i].Error()
				}
				s = append(s, msg)
			}
		}
		return strings.Join(s, "; ")
	}
	for left := len(addrs); left > 0; {
		select {
		case a := <-answers:
			if a.addr == nil {
				mu.Lock()
				err := lastErr[a.i]
				mu.Unlock()
				return false, fmt.Errorf("instance %d (%s): %w", a.i, addrs[a.i], err)
			}
			answered[a.i] = true
			left--
			if ta, ok := a.addr.(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
				loopback = false
			}
		case <-tick.C:
			warn("MPI launcher: waiting for the remote-exec servers (%s) of %s", time.Since(start).Round(time.Second), pending())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return false, fmt.Errorf("MPI launcher: gave up after %s waiting for the remote-exec servers of %s", limit, pending())
			}
			return false, ctx.Err()
		}
	}
	return loopback, nil
}

// shutdownServers tells every server at addrs that mpirun is done,
// retrying until ctx ends.
func shutdownServers(ctx context.Context, addrs []string, key []byte) error {
	var wg sync.WaitGroup
	errs := make([]error, len(addrs))
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
				err := remoteexec.Shutdown(ctx, a, key)
				if err == nil {
					return
				}
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("telling the remote-exec server at %s that mpirun is done: %w", a, err)
					return
				case <-time.After(wait):
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hostfileText is Open MPI's hostfile: each instance with its slots.
func hostfileText(hosts []string, slots int) string {
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s slots=%d\n", h, slots)
	}
	return b.String()
}

type mpirunOptions struct {
	np       int
	hostfile string
	agent    string
	loopback bool
	wd       string
}

// mpirunArgs are mpirun's arguments for `shell -c command` on every rank.
func mpirunArgs(o mpirunOptions, shell, command string) []string {
	args := []string{
		"--allow-run-as-root",
		"-np", strconv.Itoa(o.np),
		"--hostfile", o.hostfile,
		"--mca", "plm_rsh_agent", o.agent,
		// Only mpirun's own agents hold the key: no daemon launches others.
		"--mca", "plm_rsh_no_tree_spawn", "1",
		// The agent is given the stable name as written, which resolves in
		// the pods (the short name, the pod's, does not resolve in others).
		"--mca", "orte_keep_fqdn_hostnames", "1",
		// Cores are the node's to hand out (cpu limits), not mpirun's: with
		// several pods on a node, binding would put their ranks on the same
		// cores.
		"--bind-to", "none",
		// Each daemon would share its hardware topology through a file in
		// /dev/shm mapped at a fixed address; two daemons on one node (pods
		// sharing the node's /dev/shm, as on the local node) race on it and
		// one crashes in hwloc_shmem_topology_write, leaving mpirun waiting
		// for it forever. Every daemon reads its own topology instead.
		"--mca", "rtc_hwloc_vmhole", "none",
		"--tag-output",
		"-wdir", o.wd,
	}
	if o.loopback {
		// Pods of the local node have addresses on the host's loopback,
		// which Open MPI leaves out by default. Their sockets must bind an
		// ephemeral port (min 0): a bind to a fixed port would be moved to
		// the pod's own address, and a peer's connection to 127.0.0.1:port
		// would reach its own pod.
		args = append(args,
			"--mca", "btl_tcp_if_include", "lo",
			"--mca", "oob_tcp_if_include", "lo",
			"--mca", "btl_tcp_port_min_v4", "0")
	}
	return append(args, shell, "-c", mpiRankScript, shell, command)
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if s, ok := strings.CutPrefix(kv, key+"="); ok {
			v = s
		}
	}
	return v
}

// rankDemux splits mpirun's --tag-output stream into the ranks' logs.
// Open MPI tags every chunk of a rank's output ("[job,rank]<stdout>:"),
// and again after every newline in it, so a chunk that ends mid-line puts a
// tag mid-line, and another rank's chunk may come in between: a tag
// switches the rank that the following bytes belong to, a newline ends that
// rank's line. Bytes that follow a newline without a tag are mpirun's own
// messages; they go to rank 0's log. Every finished line goes to the
// console and the tail, with the tag it began with.
type rankDemux struct {
	ranks   []io.Writer
	console func([]byte)
	tail    io.Writer

	mu      sync.Mutex
	pending []byte
	cur     int            // the rank the next bytes belong to; -1: mpirun's
	lines   map[int][]byte // each rank's unfinished line, tag first
	started bool
}

// maxTag is the longest tag that parseTag accepts.
const maxTag = 64

func (d *rankDemux) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = append(d.pending, p...)
	d.scan(false)
	return len(p), nil
}

// close passes on what is left.
func (d *rankDemux) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.scan(true)
	for _, r := range slices.Sorted(maps.Keys(d.lines)) {
		d.emit(r)
	}
}

func (d *rankDemux) scan(final bool) {
	if !d.started {
		d.cur, d.lines, d.started = -1, map[int][]byte{}, true
	}
	buf := d.pending
	for len(buf) > 0 {
		if buf[0] == '[' {
			rank, n, ok := parseTag(buf)
			if !ok && n < 0 && !final && len(buf) < maxTag {
				break // perhaps a tag, not all here yet
			}
			if ok {
				d.cur = rank
				if _, open := d.lines[rank]; !open {
					d.lines[rank] = append([]byte(nil), buf[:n]...)
				}
				buf = buf[n:]
				continue
			}
		}
		i := bytes.IndexAny(buf[1:], "\n[")
		if i < 0 {
			i = len(buf)
		} else {
			i++
		}
		if buf[0] == '\n' {
			i = 0
		}
		if i < len(buf) && buf[i] == '\n' {
			d.lines[d.cur] = append(d.lines[d.cur], buf[:i+1]...)
			d.emit(d.cur)
			d.cur = -1
			buf = buf[i+1:]
			continue
		}
		d.lines[d.cur] = append(d.lines[d.cur], buf[:i]...)
		if len(d.lines[d.cur]) >= maxPartial {
			d.emit(d.cur)
		}
		buf = buf[i:]
	}
	d.pending = append(d.pending[:0], buf...)
}

// emit sends rank's line on.
func (d *rankDemux) emit(rank int) {
	l := d.lines[rank]
	delete(d.lines, rank)
	if len(l) == 0 {
		return
	}
	d.console(l)
	d.tail.Write(l)
	text := l
	if _, n, ok := parseTag(l); ok {
		text = l[n:]
	}
	if rank < 0 || rank >= len(d.ranks) {
		rank = 0
	}
	if len(d.ranks) > 0 {
		// A shipper's Write never fails before close.
		d.ranks[rank].Write(text)
	}
}

// parseTag reads Open MPI's "[jobid,rank]<stream>:" prefix of b: the rank
// and the tag's length. When b is no tag, n is -1 if more bytes could
// still make it one, 0 otherwise.
func parseTag(b []byte) (rank, n int, ok bool) {
	if len(b) == 0 || b[0] != '[' {
		return 0, 0, false
	}
	end := bytes.IndexByte(b, ']')
	if end < 0 {
		if bytes.ContainsAny(b, "\n") {
			return 0, 0, false
		}
		return 0, -1, false
	}
	job, rankText, found := bytes.Cut(b[1:end], []byte(","))
	if !found || !digits(job) || !digits(rankText) {
		return 0, 0, false
	}
	r, err := strconv.Atoi(string(rankText))
	if err != nil {
		return 0, 0, false
	}
	rest := b[end+1:]
	for _, s := range []string{"<stdout>:", "<stderr>:", "<stddiag>:"} {
		if bytes.HasPrefix(rest, []byte(s)) {
			return r, end + 1 + len(s), true
		}
		if len(rest) < len(s) && bytes.HasPrefix([]byte(s), rest) {
			return 0, -1, false
		}
	}
	return 0, 0, false
}

func digits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
