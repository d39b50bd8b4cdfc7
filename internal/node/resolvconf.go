package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet's limits on a pod's resolver configuration (glibc reads at most
// 3 nameservers; newer glibc up to 32 search domains).
const (
	maxNameservers = 3
	maxSearches    = 32
)

// resolverConfig is what a resolv.conf says, in the parts the kubelet keeps.
type resolverConfig struct {
	nameservers, searches, options []string
}

// parseResolvConf reads the nameserver, search and options lines as the
// kubelet does: the last search line wins, options accumulate.
func parseResolvConf(data []byte) resolverConfig {
	var rc resolverConfig
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		line := s.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				rc.nameservers = append(rc.nameservers, f[1])
			}
		case "search":
			rc.searches = nil
			for _, d := range f[1:] {
				if d = strings.TrimSuffix(d, "."); d != "" {
					rc.searches = append(rc.searches, d)
				}
			}
		case "options":
			rc.options = append(rc.options, f[1:]...)
		}
	}
	return rc
}

// podResolverConfig is the resolver configuration the kubelet gives a pod
// (pkg/kubelet/network/dns): the cluster DNS for ClusterFirst (a hostNetwork
// pod only with ClusterFirstWithHostNet), the host's for Default, nothing
// for None; then the pod's dnsConfig merged in.
func podResolverConfig(pod *corev1.Pod, host resolverConfig, clusterDNS string) resolverConfig {
	policy := pod.Spec.DNSPolicy
	cluster := policy == corev1.DNSClusterFirstWithHostNet ||
		((policy == corev1.DNSClusterFirst || policy == "") && !pod.Spec.HostNetwork)
	var rc resolverConfig
	switch {
	case policy == corev1.DNSNone:
	case cluster && clusterDNS != "":
		rc.nameservers = []string{clusterDNS}
		rc.searches = omitDuplicates(append([]string{
			pod.Namespace + ".svc." + clusterDomain, "svc." + clusterDomain, clusterDomain}, host.searches...))
		rc.options = []string{"ndots:5"}
	default:
		rc = resolverConfig{slices.Clone(host.nameservers), slices.Clone(host.searches), slices.Clone(host.options)}
	}
	if c := pod.Spec.DNSConfig; c != nil {
		rc.nameservers = omitDuplicates(append(rc.nameservers, c.Nameservers...))
		rc.searches = omitDuplicates(append(rc.searches, c.Searches...))
		rc.options = mergeOptions(rc.options, c.Options)
	}
	if len(rc.nameservers) > maxNameservers {
		rc.nameservers = rc.nameservers[:maxNameservers]
	}
	if len(rc.searches) > maxSearches {
		rc.searches = rc.searches[:maxSearches]
	}
	return rc
}

func omitDuplicates(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// mergeOptions lets the pod's options override those of the same name, as the
// kubelet's mergeDNSOptions; the result is sorted (the kubelet's order is a
// map's), so a pod's file does not change from one start to the next.
func mergeOptions(base []string, pod []corev1.PodDNSConfigOption) []string {
	merged := map[string]string{}
	for _, o := range base {
		name, value, _ := strings.Cut(o, ":")
		merged[name] = value
	}
	for _, o := range pod {
		merged[o.Name] = ptrOr(o.Value, "")
	}
	var out []string
	for name, value := range merged {
		if value != "" {
			name += ":" + value
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func (rc resolverConfig) String() string {
	var b strings.Builder
	if len(rc.searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.searches, " "))
	}
	for _, ns := range rc.nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(rc.options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.options, " "))
	}
	return b.String()
}

// resolvConf writes the pod's own /etc/resolv.conf, which its containers
// see in their mount namespaces only, like its /etc/hosts.
func (w *podWorker) resolvConf(pod *corev1.Pod) (string, error) {
	host, err := os.ReadFile(w.a.resolvConfPath())
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	rc := podResolverConfig(pod, parseResolvConf(host), w.a.dnsIP)
	return writeAtomic(w.dir, "resolv.conf", []byte(rc.String()))
}

// writeAtomic writes dir/name whole and renames it into place: a container
// starting meanwhile (each start writes it) never binds a half-written file.
func writeAtomic(dir, name string, data []byte) (string, error) {
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, name+"-*")
	if err != nil {
		return "", err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return "", err
	}
	return path, nil
}
