// Package extension is the one place that knows the configuration settings of
// the Outpost ML extension, the counterpart of Microsoft.AzureML.Kubernetes.
// It turns what a user passed with --config and --config-protected into a
// typed Settings value, so that the CLI, the workspace and the renderer of
// the extension's manifests cannot disagree about what a setting means.
//
// The keys and their True/False values are those of the Azure ML extension,
// so existing commands work unchanged. Validation is stricter than the real
// CLI's: unknown keys are errors, and every problem is reported at once,
// because a round trip to a cluster is expensive to waste on one typo.
package extension

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ServiceType is the Kubernetes service type that exposes the inference router.
type ServiceType string

const (
	LoadBalancer ServiceType = "LoadBalancer"
	NodePort     ServiceType = "NodePort"
	ClusterIP    ServiceType = "ClusterIP"
)

// Secret holds protected bytes. It prints as RedactedValue under every fmt
// verb, so logging a Settings value cannot leak the router's private key;
// being a []byte underneath, it passes wherever a []byte is expected.
type Secret []byte

// Format redacts for all verbs, %d and %x included, which a String method
// alone would not cover.
func (s Secret) Format(f fmt.State, _ rune) {
	if len(s) > 0 {
		fmt.Fprint(f, RedactedValue)
	}
}

func (s Secret) String() string { return fmt.Sprint(s) }

// Settings is the validated configuration of one extension instance.
type Settings struct {
	EnableTraining           bool
	EnableInference          bool
	AllowInsecureConnections bool

	InferenceRouterServiceType ServiceType
	// InternalLoadBalancerProvider is "" (a public load balancer) or "azure".
	InternalLoadBalancerProvider string
	InferenceRouterHA            bool

	SSLCname string
	// SSLSecret names an existing TLS secret in namespace azureml.
	SSLSecret  string
	SSLCertPEM Secret
	SSLKeyPEM  Secret

	// NodeSelector is nil when no nodeSelector.<label-key> was given.
	NodeSelector map[string]string

	InstallNvidiaDevicePlugin bool
	InstallPromOp             bool
	InstallVolcano            bool
	InstallDcgmExporter       bool
	OpenShift                 bool
	LogAnalyticsWS            bool

	// Warnings are for the user to read; none of them stops an install.
	Warnings []string
}

// HTTPS reports whether the inference router terminates TLS.
func (s Settings) HTTPS() bool { return s.SSLSecret != "" || len(s.SSLCertPEM) > 0 }

// Parse validates config and protected (the --config and --config-protected
// pairs, keys as the user typed them) and returns the Settings they describe.
// On error it returns the zero Settings and every problem found, joined, so
// that the user can fix them all in one go. Values given as protected never
// appear in an error or a warning.
func Parse(config, protected map[string]string) (Settings, error) {
	p := &parser{in: map[string]entry{}, intended: map[string]bool{}}
	p.merge(config, protected)
	p.checkKeys()
	s := p.settings()
	if len(p.errs) > 0 {
		return Settings{}, errors.Join(p.errs...)
	}
	s.Warnings = p.warnings
	return s, nil
}

type entry struct {
	value     string
	protected bool
}

type parser struct {
	in       map[string]entry
	errs     []error
	warnings []string
	// intended holds the accepted keys that an unknown key looks like a typo
	// of. Rules that complain about such a key missing stay quiet: the typo
	// is already reported, and "enableTraining is missing" next to "did you
	// mean enableTraining?" only adds noise.
	intended map[string]bool
}

func (p *parser) errorf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

func (p *parser) warnf(format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
}

func (p *parser) merge(config, protected map[string]string) {
	for k, v := range config {
		p.in[k] = entry{value: v}
	}
	for _, k := range slices.Sorted(maps.Keys(protected)) {
		if _, dup := config[k]; dup {
			// The plain value is kept for the other rules, so that a
			// duplicate does not also show up as a missing setting.
			p.errorf("%s is given both with --config and with --config-protected: give it once", k)
			continue
		}
		p.in[k] = entry{value: protected[k], protected: true}
	}
}

func (p *parser) checkKeys() {
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(p.in)) {
		if _, ok := lookup(k); ok || strings.HasPrefix(k, nodeSelectorPrefix) {
			continue
		}
		msg := fmt.Sprintf("%q", k)
		if s := suggest(k); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
			p.intended[s] = true
		}
		unknown = append(unknown, msg)
		delete(p.in, k)
	}
	if len(unknown) == 0 {
		return
	}
	var accepted []string
	for _, s := range specs {
		accepted = append(accepted, s.Name)
	}
	noun := "setting"
	if len(unknown) > 1 {
		noun = "settings"
	}
	p.errorf("unknown %s %s; accepted settings are: %s",
		noun, strings.Join(unknown, ", "), strings.Join(accepted, ", "))
}

func (p *parser) has(key string) bool {
	_, ok := p.in[key]
	return ok
}

// shown is a setting as messages may display it.
func (p *parser) shown(key string) string {
	e := p.in[key]
	if e.protected {
		return key + "=" + RedactedValue
	}
	return key + "=" + e.value
}

// invalid reports a value that breaks rule, quoting it only when it is not protected.
func (p *parser) invalid(key, rule string) {
	e := p.in[key]
	if e.protected {
		p.errorf("%s: invalid value (given with --config-protected, so not shown): %s", key, rule)
		return
	}
	p.errorf("%s: invalid value %q: %s", key, e.value, rule)
}

// boolean returns the setting's value, or def when it is not given. ok is
// false when the value is not a boolean, already reported; callers then skip
// the rules that depend on it rather than pile guesses onto one mistake.
func (p *parser) boolean(key string, def bool) (v, ok bool) {
	e, set := p.in[key]
	switch {
	case !set:
		return def, true
	case strings.EqualFold(e.value, "true"):
		return true, true
	case strings.EqualFold(e.value, "false"):
		return false, true
	}
	rule := "must be True or False"
	if b := suggestBool(e.value); b != "" && !e.protected {
		rule += fmt.Sprintf(" (did you mean %s?)", b)
	}
	p.invalid(key, rule)
	return def, false
}

func (p *parser) settings() Settings {
	var s Settings
	training, trainingOK := p.boolean(keyEnableTraining, false)
	inference, inferenceOK := p.boolean(keyEnableInference, false)
	if trainingOK && inferenceOK && !training && !inference &&
		!p.intended[keyEnableTraining] && !p.intended[keyEnableInference] {
		p.errorf("neither %s nor %s is True: set %s=True to run training jobs, %s=True to serve online endpoints, or both",
			keyEnableTraining, keyEnableInference, keyEnableTraining, keyEnableInference)
	}
	s.EnableTraining, s.EnableInference = training, inference
	serving := inferenceOK && inference

	// Unlike the Azure extension, these default to False: Outpost deploys a
	// cluster-wide add-on only when asked, so that it never fights one the
	// cluster already runs.
	s.InstallNvidiaDevicePlugin, _ = p.boolean(keyInstallNvidiaDevicePlugin, false)
	s.InstallPromOp, _ = p.boolean(keyInstallPromOp, false)
	s.InstallVolcano, _ = p.boolean(keyInstallVolcano, false)
	s.InstallDcgmExporter, _ = p.boolean(keyInstallDcgmExporter, false)
	s.OpenShift, _ = p.boolean(keyOpenShift, false)
	s.LogAnalyticsWS, _ = p.boolean(keyLogAnalyticsWS, false)
	if p.has(keyLogAnalyticsWS) {
		p.warnf("%s has no effect in Outpost: the extension sends its logs to the workspace itself, "+
			"where they are shown with the job or deployment", keyLogAnalyticsWS)
	}

	p.router(&s, serving)
	p.tls(&s, serving)
	s.NodeSelector = p.nodeSelector()

	if inferenceOK && !inference {
		var idle []string
		for _, sp := range specs {
			if sp.inferenceOnly && p.has(sp.Name) {
				idle = append(idle, sp.Name)
			}
		}
		if len(idle) > 0 {
			p.warnf("%s is not True, so these inference settings have no effect: %s",
				keyEnableInference, strings.Join(idle, ", "))
		}
	}
	return s
}

// router settles how the inference router is exposed, folding the legacy
// privateEndpoint* and inferenceLoadBalancerHA keys into their successors.
func (p *parser) router(s *Settings, serving bool) {
	typ, typeFrom, typeKnown := ServiceType(""), "", true
	if p.has(keyInferenceRouterServiceType) {
		v := p.in[keyInferenceRouterServiceType].value
		for _, t := range []ServiceType{LoadBalancer, NodePort, ClusterIP} {
			if strings.EqualFold(v, string(t)) {
				typ, typeFrom = t, p.shown(keyInferenceRouterServiceType)
			}
		}
		if typ == "" {
			p.invalid(keyInferenceRouterServiceType, "must be LoadBalancer, NodePort or ClusterIP")
			typeKnown = false
		}
	}

	provider, providerOK := "", true
	if p.has(keyInternalLoadBalancerProvider) {
		if strings.EqualFold(p.in[keyInternalLoadBalancerProvider].value, "azure") {
			provider = "azure"
		} else {
			p.invalid(keyInternalLoadBalancerProvider, "the only provider is azure (an internal Azure load balancer); "+
				"leave the setting out for a public load balancer")
			providerOK = false
		}
	}

	for _, sp := range specs {
		if sp.Successor != "" && p.has(sp.Name) {
			p.warnf("%s is deprecated: use %s instead", sp.Name, sp.Successor)
		}
	}

	nodePort, nodePortOK := p.boolean(keyPrivateEndpointNodeport, false)
	if !nodePortOK {
		typeKnown = false
	}
	// False for a legacy key was its default and asks for nothing, so only
	// True can conflict with a successor.
	if nodePort {
		switch {
		case typ == "":
			typ, typeFrom = NodePort, p.shown(keyPrivateEndpointNodeport)
		case typ != NodePort:
			p.errorf("%s conflicts with %s: %s is the old way to ask for inferenceRouterServiceType=NodePort; keep only %s",
				p.shown(keyPrivateEndpointNodeport), typeFrom, keyPrivateEndpointNodeport, keyInferenceRouterServiceType)
			typeKnown = false
		}
	}

	ilb, ilbOK := p.boolean(keyPrivateEndpointILB, false)
	var internalFrom []string
	if provider != "" {
		internalFrom = append(internalFrom, p.shown(keyInternalLoadBalancerProvider))
	}
	if ilb {
		internalFrom = append(internalFrom, p.shown(keyPrivateEndpointILB))
		provider = "azure"
	}
	if len(internalFrom) > 0 && typeKnown && ilbOK && providerOK && typ != "" && typ != LoadBalancer {
		p.errorf("an internal load balancer (%s) needs inferenceRouterServiceType=LoadBalancer, but %s asks for %s: "+
			"drop one of them", strings.Join(internalFrom, ", "), typeFrom, typ)
	}
	if typ == "" {
		typ = LoadBalancer
	}
	s.InferenceRouterServiceType, s.InternalLoadBalancerProvider = typ, provider
	if serving && provider != "" {
		p.warnf("internalLoadBalancerProvider=azure takes effect only where the cluster's cloud provider is Azure (AKS); " +
			"elsewhere the inference router gets whatever load balancer the cluster provides")
	}

	ha, haOK := p.boolean(keyInferenceRouterHA, true)
	legacyHA, legacyOK := p.boolean(keyInferenceLoadBalancerHA, true)
	if p.has(keyInferenceLoadBalancerHA) {
		if !p.has(keyInferenceRouterHA) {
			ha = legacyHA
		} else if haOK && legacyOK && ha != legacyHA {
			p.errorf("%s and %s disagree: %s is the old name of %s; keep only %s",
				p.shown(keyInferenceLoadBalancerHA), p.shown(keyInferenceRouterHA),
				keyInferenceLoadBalancerHA, keyInferenceRouterHA, keyInferenceRouterHA)
		}
	}
	s.InferenceRouterHA = ha
}

// tls settles whether and how the inference router terminates TLS.
func (p *parser) tls(s *Settings, serving bool) {
	insecure, insecureOK := p.boolean(keyAllowInsecureConnections, false)
	certSet, keySet, secretSet := p.has(keySSLCertPemFile), p.has(keySSLKeyPemFile), p.has(keySSLSecret)

	pemUsable := true
	for _, k := range []string{keySSLCertPemFile, keySSLKeyPemFile} {
		if p.has(k) && !p.in[k].protected {
			p.errorf("%s must be given with --config-protected, not --config: it carries the PEM contents, "+
				"and protected settings are the ones never shown or logged", k)
			pemUsable = false
		}
	}
	switch {
	case certSet && !keySet && !p.intended[keySSLKeyPemFile]:
		p.errorf("%s is given without %s: HTTPS needs the certificate and its private key", keySSLCertPemFile, keySSLKeyPemFile)
	case keySet && !certSet && !p.intended[keySSLCertPemFile]:
		p.errorf("%s is given without %s: HTTPS needs the certificate and its private key", keySSLKeyPemFile, keySSLCertPemFile)
	}
	if secretSet && (certSet || keySet) {
		p.errorf("%s and %s/%s are two ways to give the inference router its certificate: choose one",
			keySSLSecret, keySSLCertPemFile, keySSLKeyPemFile)
	}
	if secretSet {
		name := p.in[keySSLSecret].value
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			p.invalid(keySSLSecret, "not a valid Kubernetes secret name: "+explain(msgs))
		} else {
			s.SSLSecret = name
		}
	}

	tlsGiven := certSet || keySet || secretSet ||
		p.intended[keySSLCertPemFile] || p.intended[keySSLKeyPemFile] || p.intended[keySSLSecret]
	if serving && insecureOK && !insecure && !tlsGiven && !p.intended[keyAllowInsecureConnections] {
		p.errorf("%s=True needs TLS for the inference router, or an explicit opt-out: for HTTPS give the certificate and key "+
			"with --config-protected %s=<cert.pem> %s=<key.pem>, or the name of an existing TLS secret in namespace azureml "+
			"with --config %s=<name>; for plain HTTP set %s=True",
			keyEnableInference, keySSLCertPemFile, keySSLKeyPemFile, keySSLSecret, keyAllowInsecureConnections)
	}
	if insecure && (certSet || keySet || secretSet) {
		p.errorf("%s and the TLS settings (%s/%s or %s) contradict each other: keep the TLS settings for HTTPS, "+
			"or drop them to serve plain HTTP", p.shown(keyAllowInsecureConnections), keySSLCertPemFile, keySSLKeyPemFile,
			keySSLSecret)
	} else if serving && insecure {
		p.warnf("%s: the inference router serves plain HTTP, so scoring requests and their keys travel unencrypted",
			p.shown(keyAllowInsecureConnections))
	}
	s.AllowInsecureConnections = insecure

	if p.has(keySSLCname) {
		// DNS names are case-insensitive; the lower-case form is the one
		// Kubernetes and certificates compare against.
		name := strings.ToLower(p.in[keySSLCname].value)
		if msgs := validation.IsDNS1123Subdomain(strings.TrimPrefix(name, "*.")); len(msgs) > 0 {
			p.invalid(keySSLCname, "not a DNS name (a leading *. wildcard is allowed): "+explain(msgs))
		} else {
			s.SSLCname = name
		}
		if serving && !certSet && !keySet && !secretSet {
			p.warnf("%s has no effect without TLS (%s/%s or %s)", keySSLCname, keySSLCertPemFile, keySSLKeyPemFile, keySSLSecret)
		}
	}

	if !certSet || !keySet || !pemUsable {
		return
	}
	cert, key := []byte(p.in[keySSLCertPemFile].value), []byte(p.in[keySSLKeyPemFile].value)
	leaf, err := checkTLS(cert, key)
	if err != nil {
		p.errs = append(p.errs, err)
		return
	}
	s.SSLCertPEM, s.SSLKeyPEM = cert, key
	if !serving {
		return
	}
	now := time.Now()
	const when = "2006-01-02 15:04 MST"
	switch {
	case now.After(leaf.NotAfter):
		p.warnf("%s: the certificate expired on %s: clients that verify certificates will reject the inference router "+
			"until it is replaced", keySSLCertPemFile, leaf.NotAfter.UTC().Format(when))
	case now.Before(leaf.NotBefore):
		p.warnf("%s: the certificate is not valid before %s: clients that verify certificates will reject the "+
			"inference router until then", keySSLCertPemFile, leaf.NotBefore.UTC().Format(when))
	}
	if s.SSLCname != "" && leaf.VerifyHostname(s.SSLCname) != nil {
		p.warnf("%s is not among the DNS names of the certificate in %s: clients that check the host name "+
			"will reject the inference router", p.shown(keySSLCname), keySSLCertPemFile)
	}
}

// explain joins the messages of k8s.io/apimachinery's validation, without the
// regular expression they quote: users act on the prose and the example.
func explain(msgs []string) string {
	for i, m := range msgs {
		msgs[i] = regexQuote.ReplaceAllString(m, "")
	}
	return strings.Join(msgs, "; ")
}

var regexQuote = regexp.MustCompile(`,? regex used for validation is '[^']*'`)

func (p *parser) nodeSelector() map[string]string {
	var sel map[string]string
	for _, k := range slices.Sorted(maps.Keys(p.in)) {
		label, ok := strings.CutPrefix(k, nodeSelectorPrefix)
		if !ok {
			continue
		}
		if label == "" {
			p.errorf("%q needs a label key after the dot, e.g. %skubernetes.io/os=linux", k, nodeSelectorPrefix)
			continue
		}
		valid := true
		if msgs := validation.IsQualifiedName(label); len(msgs) > 0 {
			p.errorf("%s: %q is not a valid label key: %s", k, label, explain(msgs))
			valid = false
		}
		value := p.in[k].value
		if msgs := validation.IsValidLabelValue(value); len(msgs) > 0 {
			p.invalid(k, "not a valid label value: "+explain(msgs))
			valid = false
		}
		if valid {
			if sel == nil {
				sel = map[string]string{}
			}
			sel[label] = value
		}
	}
	return sel
}
