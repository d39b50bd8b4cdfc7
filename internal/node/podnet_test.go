package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

// Two replicas of a server that binds every address on one port (Python's
// http.server with no --bind) both serve, behind a Service whose proxy
// listens on the same port, and a probe on localhost reaches each pod's own.
func TestServersBindingEveryAddressDoNotCollide(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	labels := map[string]string{"app": "wild"}
	// The Service first, so that its proxy already listens on
	// <cluster IP>:8080 when the pods bind *:8080.
	svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "wild"},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "wild"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Volumes: []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
					Containers: []corev1.Container{{
						Name: "web", Image: "python:3.11",
						Command:      []string{"sh", "-c", `printf %s "$HOSTNAME" > /www/name && cd /www && exec python3 -m http.server 8080`},
						VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: "/www"}},
						// What a user writes: ask localhost, inside the pod.
						ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
							Command: []string{"python3", "-c", `import os, urllib.request as u
assert u.urlopen("http://127.0.0.1:8080/name").read().decode() == os.environ["HOSTNAME"]`}}}},
					}},
				},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pods := map[string]string{} // name -> IP
	clustertest.Eventually(t, 60*time.Second, "2 ready pods", func() error {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=wild"})
		if err != nil {
			return err
		}
		clear(pods)
		var states []string
		for _, p := range list.Items {
			if isReady(&p) && p.DeletionTimestamp == nil {
				pods[p.Name] = p.Status.PodIP
			}
			states = append(states, fmt.Sprintf("%s: %s %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses))
		}
		if len(pods) != 2 {
			return fmt.Errorf("%d ready: %s", len(pods), strings.Join(states, "; "))
		}
		return nil
	})

	get := func(url string) (string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, body)
		}
		return string(body), nil
	}
	// Each pod answers on its own IP, as itself.
	for name, ip := range pods {
		got, err := get(fmt.Sprintf("http://%s:8080/name", ip))
		if err != nil || got != name {
			t.Errorf("pod %s at %s:8080 answered %q (%v), want its name", name, ip, got, err)
		}
	}
	// The Service reaches both.
	seen := map[string]bool{}
	url := fmt.Sprintf("http://%s:8080/name", svc.Spec.ClusterIP)
	clustertest.Eventually(t, 30*time.Second, "the Service reaches both pods", func() error {
		got, err := get(url)
		if err != nil {
			return err
		}
		if _, ok := pods[got]; !ok {
			return fmt.Errorf("answer %q is none of the pods %v", got, pods)
		}
		seen[got] = true
		if len(seen) != 2 {
			return fmt.Errorf("only %v answered so far", seen)
		}
		return nil
	})
}
