package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/container"
)

// kubectl runs kubectl against the package's cluster with stdin and returns
// stdout, stderr and the exit code, for commands expected to fail too.
func kubectl(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	return clustertest.RunWithInput(t, stdin, nil, "kubectl", append([]string{"--kubeconfig", clustertest.Cluster.Kubeconfig}, args...)...)
}

// A path no host has: seeing it proves a command runs in the container's
// mount namespace.
const inside = "/outpost-exec-test-volume"

func TestKubectlExec(t *testing.T) {
	if _, err := os.Stat(inside); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the host must not have %s for this test: %v", inside, err)
	}
	ns, c := namespace(t)
	ctr := shell("app", "echo made-by-the-container > "+inside+"/marker && exec sleep 3600")
	ctr.WorkingDir = inside
	ctr.Env = []corev1.EnvVar{{Name: "GREETING", Value: "hello from env"}}
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: inside}}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "box"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{ctr},
		Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}})
	waitPod(t, c, ns, "box", 60*time.Second, "ready", isReady)
	exe := func(stdin io.Reader, args ...string) (string, string, int) {
		return kubectl(t, stdin, append([]string{"-n", ns, "exec", "box", "--"}, args...)...)
	}

	clustertest.Eventually(t, 10*time.Second, "marker written by the container", func() error {
		out, errOut, code := exe(nil, "cat", inside+"/marker")
		if code != 0 || out != "made-by-the-container\n" {
			return fmt.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		return nil
	})
	out, errOut, code := exe(nil, "sh", "-c", `echo "$GREETING in $(pwd)"; cat /proc/1/cmdline | tr '\0' ' '`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The container's env and workingDir; PID 1 of its own PID namespace is
	// the container's init, not the host's.
	if want := "hello from env in " + inside + "\n"; !strings.HasPrefix(out, want) || !strings.Contains(out, "container-init") {
		t.Errorf("exec saw %q, want %q followed by the container's init as PID 1", out, want)
	}

	if _, errOut, code := exe(nil, "sh", "-c", "echo failing >&2; exit 3"); code != 3 || !strings.Contains(errOut, "failing") {
		t.Errorf("kubectl exec of a command exiting 3: exit %d, stderr %q; want 3 and the command's stderr", code, errOut)
	}
	if out, _, code := kubectl(t, strings.NewReader("hi\nthere\n"), "-n", ns, "exec", "-i", "box", "--", "cat"); code != 0 || out != "hi\nthere\n" {
		t.Errorf("echo hi | kubectl exec -i -- cat: exit %d, stdout %q", code, out)
	}
	if _, errOut, code := exe(nil, "no-such-command"); code == 0 || !strings.Contains(errOut, "no-such-command") {
		t.Errorf("kubectl exec of a missing command: exit %d, stderr %q; want a failure naming it", code, errOut)
	}
	// The file written through exec is the container's: the host still lacks it.
	if _, _, code := exe(nil, "touch", inside+"/from-exec"); code != 0 {
		t.Fatal("touch failed")
	}
	if _, err := os.Stat(inside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec wrote to the host: %v", err)
	}
}

// TestKubectlExecTTY runs `kubectl exec -it` from a terminal, as a user at a
// shell does: the command gets a terminal of its own.
func TestKubectlExecTTY(t *testing.T) {
	ns, c := namespace(t)
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tty"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{shell("app", "exec sleep 3600")},
	}})
	waitPod(t, c, ns, "tty", 60*time.Second, "ready", isReady)
	master, term, err := container.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	cmd := exec.Command("kubectl", "--kubeconfig", clustertest.Cluster.Kubeconfig, "-n", ns, "exec", "-it", "tty", "--",
		"sh", "-c", `test -t 0 && test -t 1 && echo "terminal $(stty size)"; read line; echo "got $line"; exit 4`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term, term, term
	if err := container.ResizePTY(master, 100, 40); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.Close()
	lines := bufio.NewScanner(master)
	// kubectl's stderr shares the terminal: its own log lines (klog's
	// "E1128 06:25:09.575714 ..." such as "Unknown stream id 1, discarding
	// message", which the websocket client prints when a resize races the
	// stream's setup) are not the container's output.
	klog := regexp.MustCompile(`^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ `)
	next := func() string {
		for {
			if !lines.Scan() {
				t.Fatalf("kubectl exec -it ended early: %v", lines.Err())
			}
			if line := strings.TrimRight(lines.Text(), "\r"); !klog.MatchString(line) {
				return line
			}
		}
	}
	// The local terminal's size reaches the remote one.
	if got := next(); got != "terminal 40 100" {
		t.Errorf("first line %q, want %q", got, "terminal 40 100")
	}
	if _, err := io.WriteString(master, "typed\r"); err != nil {
		t.Fatal(err)
	}
	var got string
	for got = next(); got == "typed" || got == ""; got = next() { // the terminal echoes input
	}
	if got != "got typed" {
		t.Errorf("after typing a line: %q, want %q", got, "got typed")
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Errorf("kubectl exec -it: %v, want exit code 4", err)
	}
}

func TestKubectlPortForward(t *testing.T) {
	ns, c := namespace(t)
	web := corev1.Container{Name: "web", Image: "python:3.11", WorkingDir: "/web",
		Command:      []string{"sh", "-c", `echo served-through-port-forward > index.html && exec python3 -m http.server 8000 --bind "$POD_IP"`},
		VolumeMounts: []corev1.VolumeMount{{Name: "web", MountPath: "/web"}},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8000)}}}}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{web},
		Volumes:    []corev1.Volume{{Name: "web", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}})
	waitPod(t, c, ns, "web", 60*time.Second, "ready", isReady)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Local port 0: kubectl picks a free one and says which.
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", clustertest.Cluster.Kubeconfig, "-n", ns,
		"port-forward", "--address", "127.0.0.1", "pod/web", ":8000")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("kubectl port-forward printed nothing: %s", stderr.String())
	}
	m := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 8000`).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("kubectl port-forward said %q", lines.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	for i := 0; i < 2; i++ { // every connection is forwarded, not only the first
		resp, err := http.Get("http://" + m[1] + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "served-through-port-forward\n" {
			t.Fatalf("GET through port-forward: %s %q", resp.Status, body)
		}
	}
}

func TestKubectlAttachSaysWhy(t *testing.T) {
	ns, c := namespace(t)
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{shell("app", "exec sleep 3600")},
	}})
	waitPod(t, c, ns, "quiet", 60*time.Second, "ready", isReady)
	_, errOut, code := kubectl(t, nil, "-n", ns, "attach", "quiet")
	if code == 0 || !strings.Contains(errOut, "not supported on the outpost node") {
		t.Errorf("kubectl attach: exit %d, stderr %q; want a failure that says attach is not supported", code, errOut)
	}
}
