package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

func TestPostStartHookRunsInTheContainer(t *testing.T) {
	ns, c := namespace(t)
	// The main command waits for what the hook writes into a volume that
	// only the container sees.
	ctr := shell("app", `while [ ! -s /hook/said ]; do sleep 0.1; done; cat /hook/said`)
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "hook", MountPath: "/hook"}}
	ctr.Env = []corev1.EnvVar{{Name: "WORD", Value: "hello"}}
	ctr.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"sh", "-c", `echo "$WORD from postStart" > /hook/said`}}}}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "poststart"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{ctr},
		Volumes:    []corev1.Volume{{Name: "hook", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}})
	p := waitPod(t, c, ns, "poststart", 60*time.Second, "finished", finished)
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("phase %s: %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
	if out := clustertest.Kubectl(t, "-n", ns, "logs", "poststart"); out != "hello from postStart\n" {
		t.Errorf("logs %q, want what the postStart hook wrote", out)
	}
}

func TestFailingPostStartHookKillsTheContainer(t *testing.T) {
	ns, c := namespace(t)
	ctr := shell("app", "exec sleep 3600")
	ctr.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo no luck; exit 7"}}}}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "badhook"}, Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}})
	p := waitPod(t, c, ns, "badhook", 60*time.Second, "finished", finished)
	if p.Status.Phase != corev1.PodFailed {
		t.Errorf("phase %s, want Failed: the container was killed", p.Status.Phase)
	}
	clustertest.Eventually(t, 30*time.Second, "FailedPostStartHook event", func() error {
		evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=badhook"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedPostStartHook" && strings.Contains(e.Message, "no luck") {
				return nil
			}
		}
		return fmt.Errorf("events: %v", evs.Items)
	})
}

func TestPreStopHookReachesTheServerBeforeThePodDies(t *testing.T) {
	ns, c := namespace(t)
	logs := t.TempDir() // the server's access log outlives the pod
	web := corev1.Container{Name: "web", Image: "python:3.11", WorkingDir: "/web",
		Command:      []string{"sh", "-c", `echo bye > shutdown && exec python3 -u -m http.server 8000 --bind "$POD_IP" 2>>/logs/access.log`},
		VolumeMounts: []corev1.VolumeMount{{Name: "web", MountPath: "/web"}, {Name: "logs", MountPath: "/logs"}},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
			ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8000)}}},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/shutdown", Port: intstr.FromInt32(8000)}}},
	}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "prestop"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](30),
		Containers:                    []corev1.Container{web},
		Volumes: []corev1.Volume{
			{Name: "web", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: logs}}},
		},
	}})
	waitPod(t, c, ns, "prestop", 60*time.Second, "ready", isReady)
	if err := c.CoreV1().Pods(ns).Delete(context.Background(), "prestop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 40*time.Second, "pod gone", func() error {
		_, err := c.CoreV1().Pods(ns).Get(context.Background(), "prestop", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	data, err := os.ReadFile(filepath.Join(logs, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"GET /shutdown HTTP/1.1" 200`) {
		t.Errorf("the server never answered the preStop request; its log:\n%s", data)
	}
	evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=prestop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Reason == "FailedPreStopHook" {
			t.Errorf("preStop failed: %s", e.Message)
		}
	}
}
