package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// A pod's /etc/resolv.conf is the kubelet's for each dnsPolicy, with the
// pod's dnsConfig merged in.
func TestPodResolvConf(t *testing.T) {
	host := parseResolvConf([]byte("# the host's\nsearch old.example\nnameserver 10.0.0.2\nsearch corp.example. lab.example\n" +
		"nameserver 10.0.0.3 ; second\noptions timeout:2\noptions attempts:3 rotate\n"))
	const dnsIP = "127.96.0.10"
	pod := func(policy corev1.DNSPolicy, hostNetwork bool, cfg *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec: corev1.PodSpec{DNSPolicy: policy, HostNetwork: hostNetwork, DNSConfig: cfg}}
	}
	clusterFirst := "search ns.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n" +
		"nameserver 127.96.0.10\noptions ndots:5\n"
	hosts := "search corp.example lab.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions timeout:2 attempts:3 rotate\n"
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"unset is ClusterFirst", pod("", false, nil), clusterFirst},
		{"ClusterFirst", pod(corev1.DNSClusterFirst, false, nil), clusterFirst},
		{"ClusterFirst on the host network is Default", pod(corev1.DNSClusterFirst, true, nil), hosts},
		{"ClusterFirstWithHostNet", pod(corev1.DNSClusterFirstWithHostNet, true, nil), clusterFirst},
		{"Default", pod(corev1.DNSDefault, false, nil), hosts},
		{"None", pod(corev1.DNSNone, false, &corev1.PodDNSConfig{
			Nameservers: []string{"127.0.0.53"}, Searches: []string{"a.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "edns0"}}}),
			"search a.example\nnameserver 127.0.0.53\noptions edns0 ndots:2\n"},
		{"None without dnsConfig", pod(corev1.DNSNone, false, nil), ""},
		{"dnsConfig merged: duplicates dropped, options overridden", pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{
			Nameservers: []string{"127.96.0.10", "127.0.0.53"}, Searches: []string{"cluster.local", "x.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("1")}, {Name: "single-request"}}}),
			"search ns.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example x.example\n" +
				"nameserver 127.96.0.10\nnameserver 127.0.0.53\noptions ndots:1 single-request\n"},
		{"at most 3 nameservers", pod(corev1.DNSDefault, false, &corev1.PodDNSConfig{Nameservers: []string{"10.0.0.4", "10.0.0.5"}}),
			"search corp.example lab.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\noptions attempts:3 rotate timeout:2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podResolverConfig(tc.pod, host, dnsIP).String(); got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
