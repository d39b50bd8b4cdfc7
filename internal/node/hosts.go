package node

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// clusterDomain is the kubelet's default DNS domain, which a pod's FQDN ends in.
const clusterDomain = "cluster.local"

// hostsFile writes the pod's own /etc/hosts, as the kubelet's managed hosts
// file: the host's entries (a container here sees the host's network and
// names), the pod's hostname at its IP, and the pod's hostAliases; for a
// hostNetwork pod, the host's entries and the hostAliases only. Every
// container of the pod gets it at /etc/hosts, in its mount namespace only.
func (w *podWorker) hostsFile(pod *corev1.Pod, ip string) (string, error) {
	host, err := os.ReadFile("/etc/hosts")
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	var b bytes.Buffer
	if !pod.Spec.HostNetwork {
		// The header's first line is the kubelet's, which tools look for.
		b.WriteString("# Kubernetes-managed hosts file.\n# outpost node: the host's entries, then the pod's.\n")
	}
	b.Write(host)
	if len(host) > 0 && !bytes.HasSuffix(host, []byte("\n")) {
		b.WriteByte('\n')
	}
	hostname := podHostname(pod)
	switch {
	case pod.Spec.HostNetwork:
		// As the kubelet: a hostNetwork pod has the node's names, no entry of its own.
	case pod.Spec.Subdomain != "":
		fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", ip, hostname, pod.Spec.Subdomain, pod.Namespace, clusterDomain, hostname)
	default:
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return writeAtomic(w.dir, "etc-hosts", b.Bytes())
}

// podHostname is the pod's own hostname, as the kubelet gives it:
// spec.hostname, else the pod's name (at most 63 characters, a DNS label);
// the FQDN with setHostnameAsFQDN and a subdomain.
func podHostname(pod *corev1.Pod) string {
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	return hostname
}

// utsHostname is what a container's UTS namespace is named: none (the
// host's) for hostNetwork pods.
func utsHostname(pod *corev1.Pod) string {
	switch {
	case pod.Spec.HostNetwork:
		return ""
	case pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN && pod.Spec.Subdomain != "":
		return podHostname(pod) + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + clusterDomain
	}
	return podHostname(pod)
}
