package node_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

// TestBusyboxImageShell: in a busybox image, `sh` is not the host's dash:
// `${x//a/b}` is an expansion of busybox's ash (and bash) that dash refuses
// with "Bad substitution"; and, as in the real image, a program the shell runs
// sees environment variables whose names are not shell identifiers (a
// ConfigMap key such as data-1 given with envFrom). The image's default
// command (`sh`) runs too, instead of ending in CreateContainerConfigError.
func TestBusyboxImageShell(t *testing.T) {
	ns, c := namespace(t)
	if _, err := c.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keys"},
		Data: map[string]string{"data-1": "value-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bb"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "main", Image: "registry.k8s.io/e2e-test-images/busybox:1.37.0-1",
		Command: []string{"sh", "-c", `x=dash; echo "${x//dash/busybox}"; env | grep '^data-1='`},
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "keys"}}}},
	}}}})
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bb-default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "main", Image: "busybox:1.36",
	}}}})
	p := waitPod(t, c, ns, "bb", 30*time.Second, "finished", finished)
	if out := clustertest.Kubectl(t, "-n", ns, "logs", "bb"); p.Status.Phase != corev1.PodSucceeded || out != "busybox\ndata-1=value-1\n" {
		t.Fatalf("phase %s, logs %q: want Succeeded, \"busybox\" from the image's shell and data-1=value-1 from env", p.Status.Phase, out)
	}
	p = waitPod(t, c, ns, "bb-default", 30*time.Second, "finished", finished)
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("busybox with its default command: phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
}

// TestPauseImageRuns: the pause image has no command in the spec; it runs
// (outpost pause) until the pod is deleted.
func TestPauseImageRuns(t *testing.T) {
	ns, c := namespace(t)
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pause"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](30),
		Containers:                    []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10.1"}},
	}})
	waitPod(t, c, ns, "pause", 30*time.Second, "ready", isReady)
	if err := c.CoreV1().Pods(ns).Delete(context.Background(), "pause", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// pause exits at once on SIGTERM: the pod is gone long before its 30 s grace period.
	clustertest.Eventually(t, 20*time.Second, "pause pod deleted", func() error {
		if _, err := c.CoreV1().Pods(ns).Get(context.Background(), "pause", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

// TestAPIServerProxiesToPods: `kubectl get --raw .../pods/P:PORT/proxy/` and
// `.../services/S:PORT/proxy/` reach the pod at its loopback address (upstream
// refuses loopback addresses; upstream/build.sh lifts that). The pod is the
// httpd image, served by busybox httpd with the image's "It works!" page.
func TestAPIServerProxiesToPods(t *testing.T) {
	ns, c := namespace(t)
	labels := map[string]string{"app": "web"}
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: labels}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyAlways,
		Containers: []corev1.Container{{
			Name: "httpd", Image: "registry.k8s.io/e2e-test-images/httpd:2.4.38-4",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}},
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}}},
		}},
	}})
	if _, err := c.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 8000, TargetPort: intstr.FromInt32(80)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, c, ns, "web", 30*time.Second, "ready", isReady)
	for _, path := range []string{
		"/api/v1/namespaces/" + ns + "/pods/web:80/proxy/",
		"/api/v1/namespaces/" + ns + "/pods/web/proxy/", // the pod's first port
		"/api/v1/namespaces/" + ns + "/services/web:8000/proxy/",
	} {
		// The Service's Endpoints follow the pod's readiness a moment later.
		clustertest.Eventually(t, 20*time.Second, "GET "+path, func() error {
			out, errOut, code := clustertest.Run(t, nil, "kubectl", "--kubeconfig", clustertest.Cluster.Kubeconfig, "get", "--raw", path)
			if code != 0 || !strings.Contains(out, "It works!") {
				return fmt.Errorf("exit %d: %s%s", code, out, errOut)
			}
			return nil
		})
	}
}

// TestAgnhostImageHasItsFiles: upstream's agnhost image carries a serving
// certificate at /localhost.crt (netexec --tls-cert-file uses it); the shim
// shows it at that path, which the host lacks. Its Alpine programs are
// busybox applets: one the host lacks is found among them.
func TestAgnhostImageHasItsFiles(t *testing.T) {
	// Applets that are programs (not shell builtins) and rare on hosts.
	missing := ""
	for _, applet := range []string{"nslookup", "ftpget", "microcom", "udhcpc", "telnet"} {
		if _, err := exec.LookPath(applet); err != nil {
			missing = applet
			break
		}
	}
	if missing == "" {
		t.Fatal("the host has every applet this test may look for")
	}
	ns, c := namespace(t)
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cert"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "main", Image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
			Command: []string{"sh", "-c", "head -1 /localhost.crt; head -1 /localhost.key | cut -c1-10; command -v " + missing}}}}})
	p := waitPod(t, c, ns, "cert", 30*time.Second, "finished", finished)
	out := clustertest.Kubectl(t, "-n", ns, "logs", "cert")
	if want := "-----BEGIN CERTIFICATE-----\n-----BEGIN\n/.outpost/busybox/" + missing + "\n"; p.Status.Phase != corev1.PodSucceeded || out != want {
		t.Fatalf("phase %s, logs %q: want %q: the image's certificate and key at /localhost.crt and /localhost.key, and busybox's %s", p.Status.Phase, out, want, missing)
	}
}
