// Package downward resolves Downward API field and resource references of a
// pod, shared by env vars and volumes.
//
// The rendering follows the kubelet (pkg/fieldpath and
// pkg/api/v1/resource in kubernetes), so that programs reading these values
// behave the same on an Outpost node as on any other node.
package downward

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// SupportedFieldPaths lists the fieldRef paths FieldValue accepts; the two
// map paths also accept a ['key'] subscript.
var SupportedFieldPaths = []string{
	"metadata.name",
	"metadata.namespace",
	"metadata.uid",
	"metadata.labels",
	"metadata.labels['<key>']",
	"metadata.annotations",
	"metadata.annotations['<key>']",
	"spec.nodeName",
	"spec.serviceAccountName",
	"status.hostIP",
	"status.hostIPs",
	"status.podIP",
	"status.podIPs",
}

// FieldValue returns the value of a fieldRef path for the pod: metadata.name,
// metadata.namespace, metadata.uid, metadata.labels, metadata.annotations
// (whole maps, rendered as the kubelet does: sorted key="value" lines with the
// value quoted like strconv.Quote), metadata.labels['k'],
// metadata.annotations['k'], spec.nodeName, spec.serviceAccountName,
// status.hostIP, status.hostIPs, status.podIP, status.podIPs (comma-joined).
// An unknown path is an error naming the path and the supported ones.
func FieldValue(pod *corev1.Pod, fieldPath string) (string, error) {
	if pod == nil {
		return "", fmt.Errorf("fieldPath %q: no pod", fieldPath)
	}
	if path, key, ok := splitSubscript(fieldPath); ok {
		switch path {
		case "metadata.labels":
			if errs := validation.IsQualifiedName(key); len(errs) != 0 {
				return "", fmt.Errorf("invalid key subscript in fieldPath %q: %s", fieldPath, strings.Join(errs, "; "))
			}
			return pod.Labels[key], nil
		case "metadata.annotations":
			// Annotation keys are validated case-insensitively by the API
			// server, so the same leniency applies here.
			if errs := validation.IsQualifiedName(strings.ToLower(key)); len(errs) != 0 {
				return "", fmt.Errorf("invalid key subscript in fieldPath %q: %s", fieldPath, strings.Join(errs, "; "))
			}
			return pod.Annotations[key], nil
		}
		return "", fmt.Errorf("fieldPath %q does not support a subscript (only metadata.labels and metadata.annotations do)", fieldPath)
	}

	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return FormatMap(pod.Labels), nil
	case "metadata.annotations":
		return FormatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return firstIP(pod.Status.HostIP, hostIPs(pod)), nil
	case "status.hostIPs":
		return strings.Join(hostIPs(pod), ","), nil
	case "status.podIP":
		return firstIP(pod.Status.PodIP, podIPs(pod)), nil
	case "status.podIPs":
		return strings.Join(podIPs(pod), ","), nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q (supported: %s)", fieldPath, strings.Join(SupportedFieldPaths, ", "))
}

// FormatMap renders a label or annotation map the way the kubelet does, so a
// file or env var holding it can be parsed by the same tools: one key="value"
// line per entry, sorted by key, no trailing newline.
func FormatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for i, k := range keys {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, m[k])
	}
	return string(b)
}

// splitSubscript splits "metadata.labels['k']" into ("metadata.labels", "k").
// The key may itself contain brackets, so only the outermost pair counts.
func splitSubscript(fieldPath string) (path, key string, ok bool) {
	if !strings.HasSuffix(fieldPath, "']") {
		return "", "", false
	}
	path, key, ok = strings.Cut(strings.TrimSuffix(fieldPath, "']"), "['")
	if !ok || path == "" {
		return "", "", false
	}
	return path, key, true
}

// firstIP prefers the plural list because that is what the kubelet orders by
// the node's IP family preference; the singular field is only a fallback for
// pods whose status was written by something that sets just that one.
func firstIP(single string, all []string) string {
	if len(all) > 0 {
		return all[0]
	}
	return single
}

func hostIPs(pod *corev1.Pod) []string {
	ips := make([]string, 0, len(pod.Status.HostIPs))
	for _, ip := range pod.Status.HostIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && pod.Status.HostIP != "" {
		ips = append(ips, pod.Status.HostIP)
	}
	return ips
}

func podIPs(pod *corev1.Pod) []string {
	ips := make([]string, 0, len(pod.Status.PodIPs))
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && pod.Status.PodIP != "" {
		ips = append(ips, pod.Status.PodIP)
	}
	return ips
}

// supportedResources is shown in errors so a user can fix a typo without
// reading the API reference.
const supportedResources = "limits.cpu, limits.memory, limits.ephemeral-storage, " +
	"requests.cpu, requests.memory, requests.ephemeral-storage, " +
	"limits.hugepages-<size>, requests.hugepages-<size>, " +
	"limits.<domain>/<name>, requests.<domain>/<name>"

// ResourceValue resolves a resourceFieldRef (limits.cpu, limits.memory,
// requests.cpu, requests.memory, limits.ephemeral-storage,
// requests.ephemeral-storage, hugepages-<size>, and extended names such as
// limits.nvidia.com/gpu), honouring ref.Divisor (default 1; the result is
// rounded up, like the kubelet).
//
// The container is ref.ContainerName, or containerName when the ref leaves it
// empty (an env var refers implicitly to its own container). When the
// container sets no cpu, memory or ephemeral-storage limit, the pod-level
// limit applies, and failing that nodeAllocatable, because that is the most
// the container can actually get. Extended resources and hugepages never fall
// back: their limits are always explicit, and an unset one means zero.
func ResourceValue(pod *corev1.Pod, containerName string, ref *corev1.ResourceFieldSelector, nodeAllocatable corev1.ResourceList) (string, error) {
	if pod == nil {
		return "", fmt.Errorf("resourceFieldRef: no pod")
	}
	if ref == nil {
		return "", fmt.Errorf("resourceFieldRef: no selector")
	}
	name := ref.ContainerName
	if name == "" {
		name = containerName
	}
	if name == "" {
		return "", fmt.Errorf("resourceFieldRef %q: no containerName given", ref.Resource)
	}
	c := findContainer(pod, name)
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef %q: container %q not found in pod %s/%s", ref.Resource, name, pod.Namespace, pod.Name)
	}

	kind, resName, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") || !supportedResource(corev1.ResourceName(resName)) {
		return "", fmt.Errorf("unsupported resourceFieldRef resource %q (supported: %s)", ref.Resource, supportedResources)
	}
	rn := corev1.ResourceName(resName)

	var q resource.Quantity
	if kind == "requests" {
		q = c.Resources.Requests[rn]
	} else {
		q = limit(pod, c, rn, nodeAllocatable)
	}

	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}

	var num, den int64
	if rn == corev1.ResourceCPU {
		// Millicores keep "500m" with divisor "1m" exact and make 0.5 cpu
		// with divisor 1 come out as 1, as the kubelet does.
		num, den = q.MilliValue(), divisor.MilliValue()
	} else {
		num, den = q.Value(), divisor.Value()
	}
	if den <= 0 {
		return "", fmt.Errorf("resourceFieldRef %q: divisor %q must be positive", ref.Resource, divisor.String())
	}
	return strconv.FormatInt(ceilDiv(num, den), 10), nil
}

func supportedResource(rn corev1.ResourceName) bool {
	switch rn {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
		return true
	}
	s := string(rn)
	if strings.HasPrefix(s, corev1.ResourceHugePagesPrefix) && len(s) > len(corev1.ResourceHugePagesPrefix) {
		return true
	}
	// Extended resources are always domain-qualified, which keeps names like
	// "limits.pods" or "limits.cpus" from silently resolving to 0.
	domain, n, ok := strings.Cut(s, "/")
	return ok && domain != "" && n != "" && !strings.Contains(n, "/")
}

// limit mirrors the kubelet's defaulting for the Downward API: a missing or
// zero limit is not "unlimited" to the reader, it is whatever the pod or the
// node will let the container use.
func limit(pod *corev1.Pod, c *corev1.Container, rn corev1.ResourceName, nodeAllocatable corev1.ResourceList) resource.Quantity {
	if q, ok := c.Resources.Limits[rn]; ok && !q.IsZero() {
		return q
	}
	switch rn {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
	default:
		return resource.Quantity{}
	}
	// Pod-level resources only cover cpu and memory.
	if pod.Spec.Resources != nil && rn != corev1.ResourceEphemeralStorage {
		if q, ok := pod.Spec.Resources.Limits[rn]; ok && !q.IsZero() {
			return q
		}
	}
	return nodeAllocatable[rn]
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// ceilDiv avoids float64, which the kubelet uses, because float64 loses
// precision above 2^53 bytes; results are identical below that.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) == (b < 0) {
		q++
	}
	return q
}
