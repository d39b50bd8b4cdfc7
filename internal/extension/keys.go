package extension

import (
	"strings"
	"unicode"
)

// The keys are spelled exactly as in the Azure ML extension so that existing
// scripts and settings files keep working; they are matched case-sensitively
// because the real system does too.
const (
	keyEnableTraining               = "enableTraining"
	keyEnableInference              = "enableInference"
	keyAllowInsecureConnections     = "allowInsecureConnections"
	keySSLCertPemFile               = "sslCertPemFile"
	keySSLKeyPemFile                = "sslKeyPemFile"
	keySSLSecret                    = "sslSecret"
	keySSLCname                     = "sslCname"
	keyInferenceRouterServiceType   = "inferenceRouterServiceType"
	keyInternalLoadBalancerProvider = "internalLoadBalancerProvider"
	keyInferenceRouterHA            = "inferenceRouterHA"
	keyPrivateEndpointNodeport      = "privateEndpointNodeport"
	keyPrivateEndpointILB           = "privateEndpointILB"
	keyInferenceLoadBalancerHA      = "inferenceLoadBalancerHA"
	keyInstallNvidiaDevicePlugin    = "installNvidiaDevicePlugin"
	keyInstallPromOp                = "installPromOp"
	keyInstallVolcano               = "installVolcano"
	keyInstallDcgmExporter          = "installDcgmExporter"
	keyOpenShift                    = "openshift"
	keyLogAnalyticsWS               = "logAnalyticsWS"

	nodeSelectorPrefix = "nodeSelector."
	nodeSelectorName   = nodeSelectorPrefix + "<label-key>"
)

// RedactedValue stands in for every protected value that is displayed.
const RedactedValue = "<redacted>"

// Key describes one accepted configuration setting.
type Key struct {
	// Name as typed after --config or --config-protected. The family of node
	// selector settings appears once, as "nodeSelector.<label-key>".
	Name        string
	Description string
	// Default is the value used when the key is not given; "" when there is none.
	Default string
	// Protected keys carry secrets and must be given with --config-protected.
	Protected bool
	// Successor is set for a deprecated key: the setting to use instead.
	Successor string
}

type spec struct {
	Key
	inferenceOnly bool
}

var specs = []spec{
	{Key: Key{Name: keyEnableTraining, Default: "False",
		Description: "True runs training jobs on the cluster (training operator)."}},
	{Key: Key{Name: keyEnableInference, Default: "False",
		Description: "True serves online endpoints on the cluster (inference operator and router azureml-fe)."}},
	{inferenceOnly: true, Key: Key{Name: keyAllowInsecureConnections, Default: "False",
		Description: "True serves inference over plain HTTP, without TLS. Not recommended."}},
	{inferenceOnly: true, Key: Key{Name: keySSLCertPemFile, Protected: true,
		Description: "PEM file with the inference router's certificate (server certificate first, then intermediates)."}},
	{inferenceOnly: true, Key: Key{Name: keySSLKeyPemFile, Protected: true,
		Description: "PEM file with the unencrypted private key of sslCertPemFile."}},
	{inferenceOnly: true, Key: Key{Name: keySSLSecret,
		Description: "Name of an existing TLS secret in namespace azureml, instead of sslCertPemFile and sslKeyPemFile."}},
	{inferenceOnly: true, Key: Key{Name: keySSLCname,
		Description: "DNS name under which clients reach the inference router over HTTPS."}},
	{inferenceOnly: true, Key: Key{Name: keyInferenceRouterServiceType, Default: string(LoadBalancer),
		Description: "How the inference router is exposed: LoadBalancer, NodePort or ClusterIP."}},
	{inferenceOnly: true, Key: Key{Name: keyInternalLoadBalancerProvider,
		Description: "azure asks for an internal (private) load balancer; needs inferenceRouterServiceType=LoadBalancer."}},
	{inferenceOnly: true, Key: Key{Name: keyInferenceRouterHA, Default: "True",
		Description: "True runs several inference router replicas; False runs one (development and test)."}},
	{Key: Key{Name: nodeSelectorName,
		Description: "Runs the extension's components only on nodes with this label; repeat for more labels."}},
	{Key: Key{Name: keyInstallNvidiaDevicePlugin, Default: "False",
		Description: "Installs the NVIDIA device plugin DaemonSet; leave False when one already runs or no GPU is used."}},
	{Key: Key{Name: keyInstallPromOp, Default: "False",
		Description: "Accepted for compatibility; installs nothing yet: Outpost does not deploy the Prometheus operator, and create and update warn when this is True."}},
	{Key: Key{Name: keyInstallVolcano, Default: "False",
		Description: "Accepted for compatibility; installs nothing yet: Outpost does not deploy the Volcano scheduler, and create and update warn when this is True."}},
	{Key: Key{Name: keyInstallDcgmExporter, Default: "False",
		Description: "Accepted for compatibility; installs nothing yet: Outpost does not deploy the NVIDIA DCGM exporter, and create and update warn when this is True."}},
	{Key: Key{Name: keyOpenShift, Default: "False",
		Description: "True for OpenShift clusters (ARO, OCP)."}},
	{Key: Key{Name: keyLogAnalyticsWS, Default: "False",
		Description: "Accepted for compatibility and ignored: Outpost sends logs to the workspace itself."}},
	{inferenceOnly: true, Key: Key{Name: keyPrivateEndpointNodeport, Default: "False",
		Successor:   "inferenceRouterServiceType=NodePort",
		Description: "Deprecated: True exposes the inference router as a NodePort service."}},
	{inferenceOnly: true, Key: Key{Name: keyPrivateEndpointILB, Default: "False",
		Successor:   "inferenceRouterServiceType=LoadBalancer with internalLoadBalancerProvider=azure",
		Description: "Deprecated: True exposes the inference router through an internal load balancer."}},
	{inferenceOnly: true, Key: Key{Name: keyInferenceLoadBalancerHA, Default: "True",
		Successor:   keyInferenceRouterHA,
		Description: "Deprecated: the old name of inferenceRouterHA."}},
}

// Keys returns every accepted key, for --help and the reference documentation.
func Keys() []Key {
	keys := make([]Key, len(specs))
	for i, s := range specs {
		keys[i] = s.Key
	}
	return keys
}

func lookup(key string) (spec, bool) {
	for _, s := range specs {
		if s.Name == key && s.Name != nodeSelectorName {
			return s, true
		}
	}
	return spec{}, false
}

// Redacted returns config and protected merged for display. Every protected
// value becomes RedactedValue, and so do the keys that always carry secrets
// even when a user wrongly gave them with --config: a private key is no less
// secret for having been passed the wrong way.
func Redacted(config, protected map[string]string) map[string]string {
	out := make(map[string]string, len(config)+len(protected))
	for k, v := range config {
		if s, ok := lookup(k); ok && s.Protected {
			v = RedactedValue
		}
		out[k] = v
	}
	for k := range protected {
		out[k] = RedactedValue
	}
	return out
}

// suggest returns the accepted key that an unknown key is most likely a typo
// of, or "" when none is close. Keys are short and distinct enough that two
// edits (seen in the wild: "ssKeyPMFile" for sslKeyPemFile) rarely point at
// the wrong one.
func suggest(key string) string {
	if strings.EqualFold(key, "nodeSelector") {
		return nodeSelectorName
	}
	var candidates []string
	for _, s := range specs {
		if s.Name != nodeSelectorName {
			candidates = append(candidates, s.Name)
		}
	}
	if i := strings.IndexByte(key, '.'); i >= 0 {
		candidates = append(candidates, nodeSelectorPrefix+key[i+1:])
	}
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := distance(strings.ToLower(key), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance: Levenshtein plus
// transposition of neighbours, the commonest typing slip ("Ture").
func distance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// suggestBool names the boolean a mistyped value was probably meant to be.
func suggestBool(v string) string {
	if strings.IndexFunc(v, unicode.IsLetter) < 0 {
		return ""
	}
	for _, b := range []string{"True", "False"} {
		if distance(strings.ToLower(v), strings.ToLower(b)) <= 2 {
			return b
		}
	}
	return ""
}
