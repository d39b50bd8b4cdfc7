//go:build tools

// Package upstream pins the upstream Kubernetes release whose control-plane
// binaries the local cluster runs. It lives in its own module so that the
// main module never inherits k8s.io/kubernetes and its replace lines.
package upstream

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
