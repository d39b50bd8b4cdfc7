package agent

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/kubenode"
)

// routerService is the router's Service, which the extension renders.
const routerService = "azureml-fe"

// inferenceRouter is where the cluster's router answers, from its Service
// in azureml: a LoadBalancer's ingress address and the Service's port, a
// node's internal address and the NodePort, or the cluster IP and the
// port; https when its settings say so, with its certificate. nil when
// the Service does not exist, or has no address yet (a LoadBalancer still
// pending); Ready once a router replica is ready.
func (a *Agent) inferenceRouter(ctx context.Context) *api.InferenceRouter {
	svc, err := a.kube.CoreV1().Services(extension.Namespace).Get(ctx, routerService, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Warn("read the inference router's Service", "err", err)
		}
		return nil
	}
	if len(svc.Spec.Ports) == 0 {
		return nil
	}
	port := svc.Spec.Ports[0]
	https := false
	var certPEM string
	cm, err := a.kube.CoreV1().ConfigMaps(extension.Namespace).Get(ctx, extension.RouterConfigName, metav1.GetOptions{})
	switch {
	case err == nil:
		https = cm.Data[extension.RouterConfigHTTPS] == "true"
		if name := cm.Data[extension.RouterConfigTLSSecret]; https && name != "" {
			s, err := a.kube.CoreV1().Secrets(extension.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				certPEM = string(s.Data[corev1.TLSCertKey])
			} else if !apierrors.IsNotFound(err) {
				a.log.Warn("read the inference router's TLS Secret", "secret", name, "err", err)
			}
		}
	case apierrors.IsNotFound(err):
		// The Service's port tells, as the extension renders them.
		https = port.Name == "https" || port.Port == 443
	default:
		a.log.Warn("read the inference router's settings", "err", err)
		https = port.Name == "https" || port.Port == 443
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	var host string
	p := port.Port
	switch svc.Spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if host = in.IP; host == "" {
				host = in.Hostname
			}
			if host != "" {
				break
			}
		}
	case corev1.ServiceTypeNodePort:
		host, p = a.nodeAddress(ctx), port.NodePort
	default:
		if ip := svc.Spec.ClusterIP; ip != corev1.ClusterIPNone {
			host = ip
		}
	}
	if host == "" || p == 0 {
		return nil
	}
	return &api.InferenceRouter{BaseURL: baseURL(scheme, host, p), CertificatePEM: certPEM, Ready: a.routerReady(ctx)}
}

// baseURL is scheme://host[:port], the port left out when it is the
// scheme's own.
func baseURL(scheme, host string, port int32) string {
	if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) {
		if strings.Contains(host, ":") {
			return scheme + "://[" + host + "]"
		}
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// nodeAddress is the internal address of the first ready node by name (any
// node answers a NodePort): the local cluster's nodes give 127.0.0.1.
func (a *Agent) nodeAddress(ctx context.Context) string {
	nodes, err := a.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		a.log.Warn("list nodes for the inference router's address", "err", err)
		return ""
	}
	slices.SortFunc(nodes.Items, func(x, y corev1.Node) int { return strings.Compare(x.Name, y.Name) })
	for _, n := range nodes.Items {
		if !kubenode.Ready(&n) {
			continue
		}
		for _, addr := range n.Status.Addresses {
			if addr.Type == corev1.NodeInternalIP && addr.Address != "" {
				return addr.Address
			}
		}
	}
	return ""
}

// routerReady tells whether a replica of the router is ready.
func (a *Agent) routerReady(ctx context.Context) bool {
	d, err := a.kube.AppsV1().Deployments(extension.Namespace).Get(ctx, routerService, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Warn("read the inference router's Deployment", "err", err)
		}
		return false
	}
	return d.Status.ReadyReplicas > 0
}
