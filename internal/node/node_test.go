package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// namespace gives each test its own namespace, ready for pods (its default
// service account exists), and deletes it afterwards.
func namespace(t *testing.T) (string, kubernetes.Interface) {
	t.Helper()
	c := clustertest.Cluster.Client
	ns := "t-" + rand.String(6)
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "default service account", func() error {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns, c
}

func waitPod(t *testing.T, c kubernetes.Interface, ns, name string, timeout time.Duration, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	clustertest.Eventually(t, timeout, fmt.Sprintf("pod %s %s", name, what), func() error {
		p, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod = p
		if !ok(p) {
			return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		return nil
	})
	return pod
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func shell(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "debian:12", Command: []string{"sh", "-c", script}}
}

func createPod(t *testing.T, c kubernetes.Interface, ns string, pod *corev1.Pod) {
	t.Helper()
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	if _, err := c.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDeploymentBehindNodePort(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "python:3.11",
					Command: []string{"python3", "-m", "http.server", "8000", "--bind", "$(POD_IP)"},
					Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8000}},
					ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
						ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}},
				}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var ips []string
	clustertest.Eventually(t, 60*time.Second, "2 ready pods", func() error {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		ips = nil
		for _, p := range pods.Items {
			if isReady(&p) && p.DeletionTimestamp == nil {
				ips = append(ips, p.Status.PodIP)
			}
		}
		if len(ips) != 2 {
			return fmt.Errorf("%d ready", len(ips))
		}
		return nil
	})
	if ips[0] == ips[1] || !strings.HasPrefix(ips[0], "127.") || !strings.HasPrefix(ips[1], "127.") {
		t.Fatalf("pod IPs %v: want two distinct 127.x addresses", ips)
	}

	clustertest.Eventually(t, 30*time.Second, "EndpointSlice lists both pods", func() error {
		slices, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		var got []string
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					got = append(got, e.Addresses...)
				}
			}
		}
		if len(got) != 2 || !(contains(got, ips[0]) && contains(got, ips[1])) {
			return fmt.Errorf("ready endpoints %v, want %v", got, ips)
		}
		return nil
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/", svc.Spec.Ports[0].NodePort)
	clustertest.Eventually(t, 20*time.Second, "NodePort answers", func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "Directory listing") {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	})

	clustertest.Eventually(t, 10*time.Second, "kubectl logs shows the request", func() error {
		out := clustertest.Kubectl(t, "-n", ns, "logs", "deployment/web")
		if !strings.Contains(out, `"GET / HTTP/1.1" 200`) {
			return fmt.Errorf("logs: %q", out)
		}
		return nil
	})

	// Deleting the Deployment leaves none of its processes running.
	if err := c.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 60*time.Second, "deployment's pods gone", func() error {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		for _, ip := range ips {
			if pids := clustertest.Processes(ip); len(pids) > 0 {
				return fmt.Errorf("processes %v still serve %s", pids, ip)
			}
		}
		return nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestJobExitCodes(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	job := func(name string, code int) *batchv1.Job {
		return &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{shell("main", fmt.Sprintf("echo working; exit %d", code))},
			}}},
		}
	}
	for _, j := range []*batchv1.Job{job("ok", 0), job("bad", 3)} {
		if _, err := c.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	jobCondition := func(name string, want batchv1.JobConditionType) {
		clustertest.Eventually(t, 60*time.Second, "job "+name+" "+string(want), func() error {
			j, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, cond := range j.Status.Conditions {
				if cond.Type == want && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", j.Status.Conditions)
		})
	}
	jobCondition("ok", batchv1.JobComplete)
	jobCondition("bad", batchv1.JobFailed)

	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=bad"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of job bad: %v %v", pods, err)
	}
	p := pods.Items[0]
	term := p.Status.ContainerStatuses[0].State.Terminated
	if p.Status.Phase != corev1.PodFailed || term == nil || term.ExitCode != 3 || term.Reason != "Error" {
		t.Fatalf("failed job's pod: phase %s, state %+v; want Failed with exit code 3", p.Status.Phase, p.Status.ContainerStatuses[0].State)
	}
	if out := clustertest.Kubectl(t, "-n", ns, "logs", p.Name); out != "working\n" {
		t.Fatalf("logs of the failed pod: %q", out)
	}
}

func TestFailingReadinessStaysNotReady(t *testing.T) {
	ns, c := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "never-ready"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "main", Image: "debian:12", Command: []string{"sleep", "300"},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1,
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/nonexistent"}}}},
	}}}}
	createPod(t, c, ns, pod)
	waitPod(t, c, ns, pod.Name, 30*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	// Several probe periods pass; the pod must never turn Ready.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		p, err := c.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if isReady(p) || p.Status.ContainerStatuses[0].Ready {
			t.Fatalf("pod became Ready although its readiness probe fails")
		}
		time.Sleep(200 * time.Millisecond)
	}
	events := clustertest.Kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=never-ready")
	if !strings.Contains(events, "Readiness probe failed") {
		t.Fatalf("no Unhealthy event for the failing probe:\n%s", events)
	}
}

func TestSecretAndConfigMapVolumes(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls"},
		StringData: map[string]string{"tls.crt": "CERT-DATA"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data: map[string]string{"mode": "fast"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "reader"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "main", Image: "debian:12",
			Command:      []string{"sh", "-c", "cat /etc/tls/tls.crt; echo; cat /config/app/mode; echo; ls /etc/tls"},
			VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/etc/tls", ReadOnly: true}, {Name: "cfg", MountPath: "/config/app"}},
		}},
		Volumes: []corev1.Volume{
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}},
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
		},
	}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 30*time.Second, "finished", finished)
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("phase %s: %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
	if out := clustertest.Kubectl(t, "-n", ns, "logs", "reader"); out != "CERT-DATA\nfast\ntls.crt\n" {
		t.Fatalf("pod printed %q", out)
	}
	// The mount paths existed only inside the pod: the host is untouched.
	for _, p := range []string{"/etc/tls", "/config"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists on the host; mounts must stay inside the pod", p)
		}
	}
}

func TestEnvironmentAndInitContainers(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		StringData: map[string]string{"password": "s3cret"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data: map[string]string{"LEVEL": "debug", "REGION": "edge"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "env"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			shell("first", "echo first >> /work/order"),
			shell("second", "echo second >> /work/order"),
		},
		Containers: []corev1.Container{{
			Name: "main", Image: "debian:12", WorkingDir: "/work",
			Command: []string{"sh", "-c"},
			Args:    []string{`cat order; echo "ip=$MY_IP pw=$PW level=$LEVEL region=$CFG_REGION greeting=$(GREETING) name=$POD_NAME"; pwd`},
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}},
				{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
			Env: []corev1.EnvVar{
				{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
				{Name: "GREETING", Value: "hi-$(LEVEL)"},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
		}},
		Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}}
	for i := range pod.Spec.InitContainers {
		pod.Spec.InitContainers[i].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 30*time.Second, "finished", finished)
	want := fmt.Sprintf("first\nsecond\nip=%s pw=s3cret level=debug region=edge greeting=hi-debug name=env\n/work\n", p.Status.PodIP)
	if out := clustertest.Kubectl(t, "-n", ns, "logs", "env"); out != want {
		t.Fatalf("pod printed %q, want %q", out, want)
	}
}

func TestServiceAccountTokenReachesAPI(t *testing.T) {
	ns, c := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "in-cluster"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		shell("main", `d=/var/run/secrets/kubernetes.io/serviceaccount
curl -sS --cacert $d/ca.crt -H "Authorization: Bearer $(cat $d/token)" \
  https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $d/namespace)/pods -o /dev/null -w '%{http_code}\n'
curl -sS --cacert $d/ca.crt https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/version -o /dev/null -w '%{http_code}\n'`),
	}}}
	createPod(t, c, ns, pod)
	waitPod(t, c, ns, pod.Name, 30*time.Second, "finished", finished)
	// 403: the API knows the service account (authenticated over verified TLS)
	// and RBAC denies it listing pods; 401 would mean the token is not accepted.
	out := clustertest.Kubectl(t, "-n", ns, "logs", pod.Name)
	if out != "403\n200\n" {
		t.Fatalf("in-cluster calls answered %q, want 403 (authenticated, not authorised) and 200", out)
	}
}

func TestLivenessRestartsAndPreviousLogs(t *testing.T) {
	ns, c := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "flaky"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyAlways,
		Containers: []corev1.Container{{
			Name: "main", Image: "debian:12",
			Command: []string{"sh", "-c", "echo run at $(date +%s%N); touch /tmp/alive-$HOSTNAME-$$; sleep 300"},
			LivenessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 1, InitialDelaySeconds: 1,
				ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/nonexistent"}}}},
		}},
		TerminationGracePeriodSeconds: ptr.To[int64](1),
	}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, pod.Name, 60*time.Second, "restarted", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if p.Status.ContainerStatuses[0].LastTerminationState.Terminated == nil {
		t.Fatalf("restarted container has no last termination state: %+v", p.Status.ContainerStatuses[0])
	}
	prev := clustertest.Kubectl(t, "-n", ns, "logs", "flaky", "--previous")
	if !strings.HasPrefix(prev, "run at ") {
		t.Fatalf("kubectl logs --previous: %q", prev)
	}
}

func TestLogsFollow(t *testing.T) {
	ns, c := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "counter"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		shell("main", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"),
	}}}
	createPod(t, c, ns, pod)
	waitPod(t, c, ns, pod.Name, 30*time.Second, "started", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning || finished(p)
	})
	// -f streams until the container exits, then kubectl returns by itself.
	out := clustertest.Kubectl(t, "-n", ns, "logs", "-f", "counter")
	if out != "line 1\nline 2\nline 3\nline 4\nline 5\n" {
		t.Fatalf("kubectl logs -f: %q", out)
	}
	if out := clustertest.Kubectl(t, "-n", ns, "logs", "--tail=2", "counter"); out != "line 4\nline 5\n" {
		t.Fatalf("kubectl logs --tail=2: %q", out)
	}
}

func TestDeletePodStopsItsProcesses(t *testing.T) {
	ns, c := namespace(t)
	marker := "marker-" + rand.String(8)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sleeper"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		// A shell that ignores SIGTERM, a child in the background and one that
		// leaves for a session of its own: the grace period ends in SIGKILL of
		// the whole container.
		shell("main", "trap '' TERM; python3 -c 'import time; time.sleep(1000)' "+marker+
			" & python3 -c 'import os, time; os.setsid(); time.sleep(1000)' "+marker+"; wait"),
	}, TerminationGracePeriodSeconds: ptr.To[int64](2)}}
	createPod(t, c, ns, pod)
	waitPod(t, c, ns, pod.Name, 30*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	clustertest.Eventually(t, 10*time.Second, "pod processes visible", func() error {
		if n := len(clustertest.Processes(marker)); n < 2 {
			return fmt.Errorf("%d processes", n)
		}
		return nil
	})
	if err := c.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 20*time.Second, "pod deleted", func() error {
		_, err := c.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	if pids := clustertest.Processes(marker); len(pids) > 0 {
		t.Fatalf("processes %v of the deleted pod still run", pids)
	}
}

func TestLoadBalancerGetsIngress(t *testing.T) {
	ns, c := namespace(t)
	_, err := c.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "lb"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "none"},
			Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 20*time.Second, "load balancer ingress", func() error {
		// The local cluster's load balancer address is the service's own
		// loopback cluster IP, where the service proxy answers its port.
		out := clustertest.Kubectl(t, "-n", ns, "get", "service", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip} {.spec.clusterIP}")
		ingress, clusterIP, _ := strings.Cut(out, " ")
		if ingress == "" || ingress != clusterIP || !strings.HasPrefix(ingress, "127.") {
			return fmt.Errorf("ingress %q, cluster IP %q", ingress, clusterIP)
		}
		return nil
	})
}
