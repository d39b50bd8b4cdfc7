package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"outpost.dev/outpost/internal/clustertest"
)

// A pod finds Services by name through the cluster DNS, as on any cluster:
// by short name and FQDN (a ClusterIP Service's address, which then serves
// HTTP), a headless Service by its pods' addresses, a pod with hostname and
// subdomain by its own name; glibc (getent) as well as Python.
func TestServicesResolveByName(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()

	kubeDNS, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the cluster DNS Service: %v", err)
	}
	dnsIP := kubeDNS.Spec.ClusterIP

	labels := map[string]string{"app": "web"}
	createPod(t, c, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: labels},
		Spec: corev1.PodSpec{Hostname: "web-0", Subdomain: "web-headless", Containers: []corev1.Container{{
			Name: "web", Image: "python:3.11",
			Command: []string{"python3", "-m", "http.server", "8000"},
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8000}},
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
				ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}},
		}}},
	})
	ports := []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}
	svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: ports}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-headless"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: ports}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := waitPod(t, c, ns, "web", 60*time.Second, "ready", isReady)
	for _, name := range []string{"web", "web-headless"} {
		clustertest.Eventually(t, 30*time.Second, "a ready endpoint of "+name, func() error {
			slices, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
			if err != nil {
				return err
			}
			for _, s := range slices.Items {
				for _, ep := range s.Endpoints {
					if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
						return nil
					}
				}
			}
			return fmt.Errorf("none in %d slices", len(slices.Items))
		})
	}

	script := `import socket, urllib.request
print(socket.gethostbyname("web"))
print(socket.gethostbyname("web.` + ns + `.svc.cluster.local"))
print(socket.gethostbyname_ex("web-headless")[2])
print(socket.gethostbyname("web-0.web-headless"))
print(urllib.request.urlopen("http://web:80/", timeout=10).status)
`
	client := shell("client", "python3 -c '"+script+"' && getent hosts web && cat /etc/resolv.conf")
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client"}, Spec: corev1.PodSpec{Containers: []corev1.Container{client}}})
	p := waitPod(t, c, ns, "client", 60*time.Second, "finished", finished)
	out := clustertest.Kubectl(t, "-n", ns, "logs", "client")
	podIP, clusterIP := web.Status.PodIP, svc.Spec.ClusterIP
	want := strings.Join([]string{
		clusterIP, clusterIP, "['" + podIP + "']", podIP, "200",
		clusterIP + " web." + ns + ".svc.cluster.local",
		"search " + ns + ".svc.cluster.local svc.cluster.local cluster.local " + clustertest.HostSearchDomain,
		"nameserver " + dnsIP,
		"options ndots:5",
	}, "\n")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.Join(strings.Fields(line), " "))
	}
	if p.Status.Phase != corev1.PodSucceeded || strings.Join(got, "\n") != want {
		t.Fatalf("phase %s, output:\n%s\nwant:\n%s", p.Status.Phase, out, want)
	}
}
