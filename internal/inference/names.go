package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Labels and annotations the operator puts on what it makes, besides
// v1alpha1.LabelEndpoint and LabelDeployment (the names the router selects
// instances by).
const (
	// LabelOnlineDeployment is the name of the OnlineDeployment object an
	// apps/v1 Deployment and its pods belong to: a pod's change finds its
	// object by it. The agent labels the deployment's Secret with it too.
	LabelOnlineDeployment = "inference.outpost.dev/onlinedeployment"
	// AnnotationTemplate is a digest of the pod template the operator
	// wants: it tells a template that needs rolling out (what the API
	// server defaults in a template differs from what the operator wrote),
	// and which pods are of the current template.
	AnnotationTemplate = "inference.outpost.dev/template"
	// AnnotationRun on the pod template is the deployment's RunDigest:
	// what its pods fetch from the workspace. A new one rolls them.
	AnnotationRun = "inference.outpost.dev/run"
)

// maxLabel is a DNS-1123 label's length.
const maxLabel = 63

// DeploymentName is the name of the apps/v1 Deployment that runs
// deployment d of endpoint e: "<e>-<d>" as a DNS-1123 label (lower case,
// anything but letters, digits and '-' turned into '-', no '-' at either
// end, at most 63 characters). When that form is not "<e>-<d>" itself,
// 6 hex digits of its sha256 follow, so that names differing only in case
// or punctuation stay apart. The agent names the OnlineDeployment object
// the same.
func DeploymentName(endpoint, deployment string) string {
	return DNSLabel(endpoint + "-" + deployment)
}

// DNSLabel is name as a DNS-1123 label, as DeploymentName makes it.
func DNSLabel(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	form := strings.Trim(b.String(), "-")
	if form == name && form != "" && len(form) <= maxLabel {
		return form
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:6]
	base := strings.TrimRight(form[:min(len(form), maxLabel-len(suffix)-1)], "-")
	if base == "" {
		return "deployment-" + suffix
	}
	return base + "-" + suffix
}
