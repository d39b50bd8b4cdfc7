package node_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

// hostDir is a directory of the host that containers see as it is: not under
// /tmp, which a container may have of its own.
func hostDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "outpost-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// A pod's hostAliases and its own name resolve inside its containers, through
// an /etc/hosts of the pod's own; the host's /etc/hosts is left as it was.
func TestHostAliasesInEtcHosts(t *testing.T) {
	ns, c := namespace(t)
	alias := "alias-" + rand.String(6) + ".outpost.test"
	hostBefore, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "aliased"}, Spec: corev1.PodSpec{
		HostAliases: []corev1.HostAlias{{IP: "127.0.0.42", Hostnames: []string{alias, "other-" + alias}}},
		Containers:  []corev1.Container{shell("main", "getent hosts "+alias+"; getent hosts aliased")},
	}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 30*time.Second, "finished", finished)
	out := clustertest.Kubectl(t, "-n", ns, "logs", pod.Name)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if p.Status.Phase != corev1.PodSucceeded || len(lines) != 2 ||
		strings.Join(strings.Fields(lines[0]), " ") != "127.0.0.42 "+alias+" other-"+alias ||
		strings.Join(strings.Fields(lines[1]), " ") != p.Status.PodIP+" aliased" {
		t.Fatalf("phase %s, output %q; want the alias at 127.0.0.42 and the pod's name at %s", p.Status.Phase, out, p.Status.PodIP)
	}
	hostAfter, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hostBefore, hostAfter) {
		t.Fatalf("the host's /etc/hosts changed: %q", hostAfter)
	}
}

// readOnlyRootFilesystem: the container cannot write the files it sees of the
// host, while its volumes keep their own mode and /dev/null takes writes.
func TestReadOnlyRootFilesystem(t *testing.T) {
	ns, c := namespace(t)
	dir := hostDir(t)
	main := shell("main", "touch "+dir+"/written 2>/dev/null && echo root-writable || echo root-read-only; "+
		"touch /scratch/x && echo volume-writable; echo x > /dev/null && echo dev-null-writable")
	main.SecurityContext = &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)}
	main.VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "read-only"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{main},
		Volumes:    []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 30*time.Second, "finished", finished)
	out := clustertest.Kubectl(t, "-n", ns, "logs", pod.Name)
	if want := "root-read-only\nvolume-writable\ndev-null-writable\n"; p.Status.Phase != corev1.PodSucceeded || out != want {
		t.Fatalf("phase %s, output %q; want %q", p.Status.Phase, out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "written")); err == nil {
		t.Fatal("a container with a read-only root wrote a file on the host")
	}
}

// While init containers run, the app containers wait as PodInitializing, as
// the kubelet shows them (kubectl prints Init:0/1 and the reason).
func TestAppContainersWaitAsPodInitializing(t *testing.T) {
	ns, c := namespace(t)
	proceed := filepath.Join(hostDir(t), "proceed")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "initializing"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{shell("wait", "while [ ! -e "+proceed+" ]; do sleep 0.1; done")},
		Containers:     []corev1.Container{shell("main", "true")},
	}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 30*time.Second, "init container running", func(p *corev1.Pod) bool {
		return len(p.Status.InitContainerStatuses) == 1 && p.Status.InitContainerStatuses[0].State.Running != nil
	})
	if len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("container statuses %+v", p.Status.ContainerStatuses)
	}
	if w := p.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Fatalf("app container state %+v while its init container runs; want waiting, reason PodInitializing",
			p.Status.ContainerStatuses[0].State)
	}
	if err := os.WriteFile(proceed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitPod(t, c, ns, pod.Name, 30*time.Second, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
}

// The pod's conditions name the containers that hold them back, as the
// kubelet's do: upstream's conformance test of a failing init container
// checks the Initialized condition's message.
func TestConditionsNameTheContainersThatHoldThemBack(t *testing.T) {
	ns, c := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "held"}, Spec: corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyAlways,
		InitContainers: []corev1.Container{shell("init1", "false"), shell("init2", "true")},
		Containers:     []corev1.Container{shell("run1", "sleep 600")},
	}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 30*time.Second, "init1 failed once", func(p *corev1.Pod) bool {
		return len(p.Status.InitContainerStatuses) == 2 && p.Status.InitContainerStatuses[0].RestartCount > 0
	})
	want := map[corev1.PodConditionType]string{
		corev1.PodInitialized:  "containers with incomplete status: [init1 init2]",
		corev1.PodReady:        "containers with unready status: [run1]",
		corev1.ContainersReady: "containers with unready status: [run1]",
	}
	for _, cond := range p.Status.Conditions {
		if msg, ok := want[cond.Type]; ok && (cond.Status != corev1.ConditionFalse || cond.Message != msg) {
			t.Errorf("condition %s: %s %q; want False %q", cond.Type, cond.Status, cond.Message, msg)
		}
	}
}

// Each pod has a hostname of its own (a UTS namespace), as under a container
// runtime: its name, or spec.hostname; programs that serve their hostname
// (agnhost serve-hostname) tell pods apart by it. kubectl exec sees it too.
func TestPodsHaveTheirOwnHostname(t *testing.T) {
	ns, c := namespace(t)
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "named"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{shell("main", "hostname; sleep 600")}}})
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.PodSpec{
		Hostname: "custom", Containers: []corev1.Container{shell("main", "hostname")}}})
	waitPod(t, c, ns, "named", 30*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	waitPod(t, c, ns, "other", 30*time.Second, "finished", finished)
	clustertest.Eventually(t, 10*time.Second, "hostnames in the logs", func() error {
		named := clustertest.Kubectl(t, "-n", ns, "logs", "named")
		other := clustertest.Kubectl(t, "-n", ns, "logs", "other")
		if named != "named\n" || other != "custom\n" {
			return fmt.Errorf("logs %q and %q; want \"named\" and \"custom\"", named, other)
		}
		return nil
	})
	if out := clustertest.Kubectl(t, "-n", ns, "exec", "named", "--", "hostname"); out != "named\n" {
		t.Errorf("kubectl exec hostname: %q, want \"named\"", out)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if host == "named" {
		t.Fatal("the host is called like the pod: the test cannot tell them apart")
	}
}

// Containers get the variables of the Services of their namespace that exist
// when they start, Docker-link ones included, as the kubelet gives them.
func TestServiceEnvironmentVariables(t *testing.T) {
	ns, c := namespace(t)
	svc, err := c.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "fooservice"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "none"}, Ports: []corev1.ServicePort{{Port: 8765, Protocol: corev1.ProtocolTCP}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "env"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{shell("main", "env")}}})
	waitPod(t, c, ns, "env", 30*time.Second, "finished", finished)
	out := clustertest.Kubectl(t, "-n", ns, "logs", "env")
	ip := svc.Spec.ClusterIP
	for _, want := range []string{"FOOSERVICE_SERVICE_HOST=" + ip, "FOOSERVICE_SERVICE_PORT=8765", "FOOSERVICE_PORT=tcp://" + ip + ":8765",
		"FOOSERVICE_PORT_8765_TCP_PROTO=tcp", "FOOSERVICE_PORT_8765_TCP=tcp://" + ip + ":8765",
		"FOOSERVICE_PORT_8765_TCP_PORT=8765", "FOOSERVICE_PORT_8765_TCP_ADDR=" + ip} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("env lacks %s:\n%s", want, out)
		}
	}
}

// A pod active longer than its activeDeadlineSeconds is ended and fails with
// reason DeadlineExceeded, also when the deadline is shortened while it runs.
func TestActiveDeadlineEndsThePod(t *testing.T) {
	ns, c := namespace(t)
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "deadline"}, Spec: corev1.PodSpec{
		ActiveDeadlineSeconds: ptr.To[int64](600), Containers: []corev1.Container{shell("main", "sleep 600")}}})
	waitPod(t, c, ns, "deadline", 30*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	patch := []byte(`{"spec":{"activeDeadlineSeconds":2}}`)
	if _, err := c.CoreV1().Pods(ns).Patch(context.Background(), "deadline", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, c, ns, "deadline", 30*time.Second, "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if p.Status.Reason != "DeadlineExceeded" {
		t.Errorf("reason %q, message %q; want DeadlineExceeded", p.Status.Reason, p.Status.Message)
	}
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil {
		t.Errorf("container statuses %+v; want the container terminated", cs)
	}
}
