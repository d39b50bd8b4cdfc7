package node_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
