// Package clustertest starts one local cluster for a test package: call Main
// from TestMain, then use Cluster in the tests. Packages that run at the same
// time (go test runs several) get distinct ports, pod and service ranges.
package clustertest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/cluster"
)

// Handle is the package's running cluster.
type Handle struct {
	Config     *cluster.Config
	REST       *rest.Config
	Client     kubernetes.Interface
	Kubeconfig string
	// Outpost is the outpost binary the cluster runs.
	Outpost string
}

// HostSearchDomain is the search domain of the resolver configuration the
// test cluster's node takes for the host's.
const HostSearchDomain = "host.outpost.test"

// Cluster is set by Main before the tests run.
var Cluster *Handle

// Main starts a cluster, runs the tests and stops the cluster, leaving no
// process behind. When the cluster does not come up it prints every
// component's log and exits non-zero.
func Main(m *testing.M) { MainWith(m, Options{}) }

// Options shape the package's cluster; the zero value is Main's single node.
type Options struct {
	// Nodes is the number of nodes (0: one); they split the machine's CPUs
	// and memory unless NodeCPU and NodeMemory say each node's.
	Nodes               int
	NodeCPU, NodeMemory string
	// NodeLabels are extra labels by node name (outpost-node,
	// outpost-node-1, ...).
	NodeLabels map[string]map[string]string
}

// MainWith is Main with a cluster shaped by opts.
func MainWith(m *testing.M, opts Options) {
	flag.Parse() // for testing.Verbose, before m.Run parses
	code, err := run(m, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M, opts Options) (int, error) {
	outpost, err := Binary()
	if err != nil {
		return 0, err
	}
	kubeBin, err := cluster.FindKubeBinDir(os.Getenv("OUTPOST_KUBE_BIN_DIR"), outpost)
	if err != nil {
		if root, rerr := moduleRoot(); rerr == nil {
			kubeBin, err = cluster.FindKubeBinDir(filepath.Join(root, ".cache", "kube", "bin"), "")
		}
		if err != nil {
			return 0, err
		}
	}
	dir, err := os.MkdirTemp("", "outpost-test-cluster-")
	if err != nil {
		return 0, err
	}
	slot, release, err := Slot()
	if err != nil {
		return 0, err
	}
	defer release()
	// The cluster DNS forwards names outside the cluster to the nameservers
	// of this file: tests must never reach past loopback, and a search
	// domain of the "host" lets them check that pods get it.
	resolvConf := filepath.Join(dir, "host-resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.1\nsearch "+HostSearchDomain+"\n"), 0o644); err != nil {
		return 0, err
	}
	cfg := &cluster.Config{Dir: dir, KubeBinDir: kubeBin, Outpost: outpost, ResolvConf: resolvConf}
	slot.Apply(cfg)
	cfg.Nodes, cfg.NodeCPU, cfg.NodeMemory, cfg.NodeLabels = opts.Nodes, opts.NodeCPU, opts.NodeMemory, opts.NodeLabels
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress io.Writer = io.Discard
	if testing.Verbose() {
		progress = os.Stderr
	}
	upErr := cluster.Up(ctx, cfg, progress)
	defer func() {
		_ = cluster.Down(cfg, upErr == nil, io.Discard)
	}()
	if upErr != nil {
		return 0, fmt.Errorf("local cluster did not come up: %v\n%s", upErr, Logs(cfg))
	}
	rc, err := cfg.RESTConfig()
	if err != nil {
		return 0, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return 0, err
	}
	Cluster = &Handle{Config: cfg, REST: rc, Client: client, Kubeconfig: cfg.KubeconfigPath(), Outpost: outpost}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- cluster logs (tests failed) ---\n%s", Logs(cfg))
	}
	return code, nil
}

// Logs returns the last lines of every component's log.
func Logs(cfg *cluster.Config) string {
	var b strings.Builder
	names := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node"}
	for i := 1; i < cfg.Nodes; i++ {
		names = append(names, fmt.Sprintf("node-%d", i))
	}
	for _, name := range names {
		data, _ := os.ReadFile(cfg.LogPath(name))
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "=== %s (%s) ===\n%s\n", name, cfg.LogPath(name), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Binary returns the outpost binary to test: $OUTPOST_BIN, or one built now
// from this module into a temporary directory.
func Binary() (string, error) {
	if b := os.Getenv("OUTPOST_BIN"); b != "" {
		return filepath.Abs(b)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "outpost-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "outpost")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/outpost")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build outpost: %v\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// Addresses is one non-overlapping set of ports and ranges for a cluster: 10
// ports, so up to 5 nodes (each node after the first takes one more).
type Addresses struct {
	N int
}

// Apply sets the cluster's ports and ranges from the slot.
func (s Addresses) Apply(c *cluster.Config) {
	c.APIPort = 21000 + s.N*10
	c.PodCIDR = fmt.Sprintf("127.%d.0.0/16", 100+s.N)
	c.ServiceCIDR = fmt.Sprintf("127.%d.0.0/16", 150+s.N)
	c.NodePortRange = fmt.Sprintf("%d-%d", 31000+s.N*50, 31000+s.N*50+49)
}

// Slot takes the first free slot (a lock file held until release) whose
// ports are free, so that concurrent test packages never collide.
func Slot() (Addresses, func(), error) {
	for n := 0; n < 40; n++ {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "outpost-test-slot-"+strconv.Itoa(n)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return Addresses{}, nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		s := Addresses{N: n}
		var c cluster.Config
		s.Apply(&c)
		free := true
		for p := c.APIPort; p < c.APIPort+6; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if !free {
			f.Close()
			continue
		}
		return s, func() { f.Close() }, nil
	}
	return Addresses{}, nil, fmt.Errorf("no free test cluster slot")
}

// Eventually retries f until it returns nil, failing the test with f's last
// error after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
}

// Kubectl runs the real kubectl against the package's cluster and returns its
// standard output; a failure fails the test with both outputs.
func Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", Cluster.Kubeconfig}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// Processes lists the live (not zombie) processes whose command line
// contains marker, each as "pid: command line", for tests asserting that
// nothing was left running.
func Processes(marker string) []string {
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if bytes.Contains(cmdline, []byte(marker)) && !bytes.Contains(stat, []byte(") Z ")) {
			found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// Run runs a command as a user would, with env added to the test's
// environment, and returns its standard output, standard error and exit code.
func Run(t testing.TB, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	return RunWithInput(t, nil, env, name, args...)
}

// RunWithInput is Run with stdin as the command's standard input.
func RunWithInput(t testing.TB, stdin io.Reader, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// Log is a log destination that goroutines write while a test reads it.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
