// Package deploymentspec is the Azure ML CLI v2 online endpoint and online
// deployment documents (Kubernetes kind): strict decoding with field paths,
// the defaults Azure ML fills in, and the checks that need nothing but the
// document (names, auth modes, traffic, scale, request and probe settings,
// resources against an instance type).
package deploymentspec

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/jobspec"
)

// nameRE is Azure ML's rule for online endpoint and deployment names: 3-32
// characters, a letter first, then letters, digits and hyphens, not ending
// in a hyphen (a Kubernetes name cannot end in one either).
var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$`)

const nameRule = "3-32 characters: a letter first, then letters, digits and hyphens, not ending in a hyphen"

// CheckName checks an endpoint or deployment name; what says which.
func CheckName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s %q: %s", what, name, nameRule)
	}
	return nil
}

func fieldErr(path, format string, args ...any) error {
	return &jobspec.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Shown-only fields: the workspace fills them in; a document does not set
// them.
var (
	endpointShown   = []string{"id", "scoring_uri", "swagger_uri", "provisioning_state", "status_message", "creation_context", "resource_group", "workspace"}
	deploymentShown = []string{"id", "provisioning_state", "status_message", "ready_instance_count", "creation_context"}
)

// EndpointShownFields and DeploymentShownFields are the fields the workspace
// shows but documents do not set: a client that sends back what it was
// shown drops them first.
func EndpointShownFields() []string   { return slices.Clone(endpointShown) }
func DeploymentShownFields() []string { return slices.Clone(deploymentShown) }

// DecodeEndpoint reads an online endpoint document strictly.
func DecodeEndpoint(data []byte) (*api.OnlineEndpoint, error) {
	var e api.OnlineEndpoint
	if err := jobspec.DecodeStrict(data, &e, "online endpoint"); err != nil {
		return nil, err
	}
	var errs []error
	for f, set := range map[string]bool{"id": e.ID != "", "scoring_uri": e.ScoringURI != "", "swagger_uri": e.SwaggerURI != "",
		"provisioning_state": e.ProvisioningState != "", "status_message": e.StatusMessage != "", "creation_context": e.CreationContext != nil,
		"resource_group": e.ResourceGroup != "", "workspace": e.Workspace != ""} {
		if set {
			errs = append(errs, fieldErr(f, "shown by the workspace, not set by a document: leave it out"))
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(errs...)
	}
	return &e, nil
}

// Auth modes of Kubernetes endpoints, as documents may spell them.
var authModes = map[string]string{"key": api.AuthModeKey, "aml_token": api.AuthModeAMLToken, "amltoken": api.AuthModeAMLToken}

// AuthMode is the auth mode a document gives, in the stored spelling
// (Key -> key); "" is key.
func AuthMode(v string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(v))
	if l == "" {
		return api.AuthModeKey, nil
	}
	if m, ok := authModes[l]; ok {
		return m, nil
	}
	if l == "aad_token" || l == "aadtoken" {
		return "", errors.New("aad_token is not supported on Kubernetes online endpoints, which take key or aml_token (Microsoft Entra tokens are for managed online endpoints)")
	}
	return "", fmt.Errorf("%q: use key or aml_token (in any case)", v)
}

// ValidateEndpoint checks an endpoint document and writes its auth mode in
// the stored spelling. creating refuses what Azure ML refuses at creation
// (traffic).
func ValidateEndpoint(e *api.OnlineEndpoint, creating bool) error {
	var errs []error
	if err := CheckName("name", e.Name); err != nil {
		errs = append(errs, &jobspec.FieldError{Path: "name", Msg: err.Error()})
	}
	if m, err := AuthMode(e.AuthMode); err != nil {
		errs = append(errs, fieldErr("auth_mode", "%v", err))
	} else {
		e.AuthMode = m
	}
	switch c := strings.TrimPrefix(e.Compute, "azureml:"); {
	case e.Compute == "":
		errs = append(errs, fieldErr("compute", "required: azureml:NAME of an attached Kubernetes compute (outpost ml compute list)"))
	case !strings.HasPrefix(e.Compute, "azureml:") || c == "" || strings.ContainsAny(c, ":/@"):
		errs = append(errs, fieldErr("compute", "%q: want azureml:NAME of an attached Kubernetes compute", e.Compute))
	}
	switch strings.ToLower(e.Kind) {
	case "", "k8s", "kubernetes":
		e.Kind = "K8s"
	default:
		errs = append(errs, fieldErr("kind", "%q: Outpost endpoints are Kubernetes ones (K8s)", e.Kind))
	}
	if len(e.MirrorTraffic) > 0 {
		errs = append(errs, fieldErr("mirror_traffic", "%s", ErrMirrorTraffic))
	}
	if creating && len(e.Traffic) > 0 {
		errs = append(errs, fieldErr("traffic", "cannot be set when an endpoint is created (as in Azure ML): create its deployments, then set it with `outpost ml online-endpoint update --name %s --traffic \"<deployment>=100\"`", e.Name))
	}
	return errors.Join(errs...)
}

// ErrMirrorTraffic is Azure ML's refusal of mirrored traffic on Kubernetes.
var ErrMirrorTraffic = errors.New("mirror traffic is not supported on Kubernetes online endpoints")

// ParseTraffic reads az's --traffic value: "blue=90 green=10" (spaces or
// commas between the pairs).
func ParseTraffic(v string) (map[string]int, error) {
	out := map[string]int{}
	for _, pair := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' }) {
		name, w, ok := strings.Cut(pair, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--traffic %q: %q is not DEPLOYMENT=PERCENT (e.g. \"blue=90 green=10\")", v, pair)
		}
		n, err := strconv.Atoi(w)
		if err != nil || strings.HasPrefix(w, "+") {
			return nil, fmt.Errorf("--traffic %q: %s=%s: the percent must be a whole number from 0 to 100", v, name, w)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--traffic %q: %s given twice", v, name)
		}
		out[name] = n
	}
	return out, nil
}

// ValidateTraffic checks a traffic map against the endpoint's deployments:
// every name one of them (in any case: it comes back in their spelling),
// every weight 0-100, and the weights summing to 100, or all 0 (no
// traffic).
func ValidateTraffic(traffic map[string]int, deployments []string) (map[string]int, error) {
	out := map[string]int{}
	sum := 0
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(traffic)) {
		w := traffic[name]
		i := slices.IndexFunc(deployments, func(d string) bool { return strings.EqualFold(d, name) })
		if i < 0 {
			have := strings.Join(deployments, ", ")
			if have == "" {
				have = "none yet"
			}
			errs = append(errs, fieldErr("traffic."+name, "no deployment %s in this endpoint; its deployments: %s", name, have))
			continue
		}
		if w < 0 || w > 100 {
			errs = append(errs, fieldErr("traffic."+name, "%d%%: a percent is from 0 to 100", w))
			continue
		}
		if _, dup := out[deployments[i]]; dup {
			errs = append(errs, fieldErr("traffic."+name, "deployment %s given twice", deployments[i]))
			continue
		}
		out[deployments[i]] = w
		sum += w
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if sum != 0 && sum != 100 {
		return nil, fieldErr("traffic", "the percents sum to %d: they must sum to 100 (or all be 0, for no traffic)", sum)
	}
	// Deployments at 0 are not written: traffic lists who takes some.
	for name, w := range out {
		if w == 0 {
			delete(out, name)
		}
	}
	return out, nil
}
