package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"

	"outpost.dev/outpost/api"
	infv1 "outpost.dev/outpost/api/inference/v1alpha1"
	trainingv1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/inference"
)

// An online endpoint the workspace sends becomes an OnlineEndpoint in its
// compute's namespace, which the router serves, and a Secret `<cr>-keys`
// with its keys, labelled with the endpoint's name (the router reads the
// Secrets so labelled). A deployment becomes an OnlineDeployment, which
// the inference operator runs, and a Secret `<cr>-credentials` with its
// credential, which its pods get; that Secret is not labelled with the
// endpoint, so that the router never reads it. Each Secret is owned by its
// object. Everything carries labelManagedBy, so that the agent finds what
// it made (after a reset, its orphans) and never touches anyone else's.
const (
	keysSuffix        = "-keys"
	credentialsSuffix = "-credentials"
	// labelEndpointObject is the name of the OnlineEndpoint a keys Secret
	// belongs to; inference.LabelOnlineDeployment that of the
	// OnlineDeployment a credentials Secret belongs to.
	labelEndpointObject = "inference.outpost.dev/onlineendpoint"
)

var (
	onlineEndpoints   = infv1.GroupVersion.WithResource(infv1.EndpointResource)
	onlineDeployments = infv1.GroupVersion.WithResource(infv1.DeploymentResource)
)

// endpointObjectName is the OnlineEndpoint's name of endpoint e: its name
// as a DNS label.
func endpointObjectName(e string) string { return inference.DNSLabel(e) }

// deploymentObjectName is the OnlineDeployment's name of deployment d of
// endpoint e: the name of the apps/v1 Deployment that runs it.
func deploymentObjectName(e, d string) string { return inference.DeploymentName(e, d) }

// errBadInference is an endpoint or deployment the agent cannot apply
// whatever the cluster: applying it again would not help.
var errBadInference = errors.New("bad online endpoint or deployment")

// errNoInference is an endpoint or deployment applied before the cluster
// serves their kinds.
var errNoInference = fmt.Errorf("the cluster does not serve %s and %s (%s): the ML extension with enableInference=True installs them",
	infv1.EndpointKind, infv1.DeploymentKind, infv1.GroupVersion)

func checkName(what, name string) error {
	if msgs := validation.IsValidLabelValue(name); len(msgs) > 0 || name == "" {
		return fmt.Errorf("%s name %q: want 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", what, name)
	}
	return nil
}

func checkEndpoint(e *api.DesiredOnlineEndpoint) error {
	if e == nil {
		return errors.New("online endpoint object without an endpoint payload")
	}
	if err := checkName("endpoint", e.Name); err != nil {
		return err
	}
	switch {
	case e.Namespace == "":
		return fmt.Errorf("endpoint %s: no namespace", e.Name)
	case e.AuthMode != api.AuthModeKey && e.AuthMode != api.AuthModeAMLToken:
		return fmt.Errorf("endpoint %s: auth mode %q, want %s or %s", e.Name, e.AuthMode, api.AuthModeKey, api.AuthModeAMLToken)
	}
	for d, pct := range e.Traffic {
		if pct < 0 || pct > 100 {
			return fmt.Errorf("endpoint %s: traffic %s=%d, want 0 to 100", e.Name, d, pct)
		}
	}
	return nil
}

func checkDeployment(d *api.DesiredOnlineDeployment) error {
	if d == nil {
		return errors.New("online deployment object without a deployment payload")
	}
	if err := errors.Join(checkName("deployment", d.Name), checkName("endpoint", d.Endpoint)); err != nil {
		return err
	}
	switch {
	case d.Namespace == "":
		return fmt.Errorf("deployment %s/%s: no namespace", d.Endpoint, d.Name)
	case d.Token == "":
		return fmt.Errorf("deployment %s/%s: no credential", d.Endpoint, d.Name)
	case d.Image == "":
		return fmt.Errorf("deployment %s/%s: no image", d.Endpoint, d.Name)
	}
	for what, n := range map[string]int{"instance_count": d.InstanceCount, "min_instances": d.ScaleSettings.MinInstances,
		"max_instances": d.ScaleSettings.MaxInstances, "polling_interval": d.ScaleSettings.PollingInterval,
		"target_utilization_percentage": d.ScaleSettings.TargetUtilizationPercentage,
		"request_timeout_ms":            d.RequestSettings.RequestTimeoutMS, "max_concurrent_requests_per_instance": d.RequestSettings.MaxConcurrentRequestsPerInstance,
		"max_queue_wait_ms": d.RequestSettings.MaxQueueWaitMS} {
		if n < 0 || n > math.MaxInt32 {
			return fmt.Errorf("deployment %s/%s: %s %d, want 0 to %d", d.Endpoint, d.Name, what, n, math.MaxInt32)
		}
	}
	return nil
}

// deploymentURL is the base of the deployment-run API for the deployment's
// pods.
func deploymentURL(workspaceURL string, d *api.DesiredOnlineDeployment) string {
	return strings.TrimRight(workspaceURL, "/") + "/deployrun/v1/resourceGroups/" + url.PathEscape(d.ResourceGroup) +
		"/workspaces/" + url.PathEscape(d.Workspace) + "/onlineEndpoints/" + url.PathEscape(d.Endpoint) +
		"/deployments/" + url.PathEscape(d.Name)
}

// deploymentSecretData is what the deployment's pods get as environment:
// how to reach the workspace (through the agent's proxy, if it has one, as
// a job's pods do) and the credential.
func deploymentSecretData(cfg Config, d *api.DesiredOnlineDeployment) map[string][]byte {
	data := map[string][]byte{
		infv1.EnvDeploymentURL:   []byte(deploymentURL(cfg.WorkspaceURL, d)),
		infv1.EnvDeploymentToken: []byte(d.Token),
	}
	if len(cfg.CAPEM) > 0 {
		data[infv1.EnvDeploymentCA] = cfg.CAPEM
	}
	if cfg.Proxy != "" {
		data[trainingv1.EnvProxy] = []byte(cfg.Proxy)
	}
	if cfg.NoProxy != "" {
		data[trainingv1.EnvNoProxy] = []byte(cfg.NoProxy)
	}
	return data
}

func endpointSecretData(e *api.DesiredOnlineEndpoint) map[string][]byte {
	return map[string][]byte{
		infv1.SecretPrimaryKey:   []byte(e.PrimaryKey),
		infv1.SecretSecondaryKey: []byte(e.SecondaryKey),
		infv1.SecretTokenKey:     []byte(e.TokenKey),
	}
}

func endpointLabels(e *api.DesiredOnlineEndpoint, cr string) map[string]string {
	return map[string]string{labelManagedBy: managedByAgent, infv1.LabelEndpoint: e.Name, labelEndpointObject: cr}
}

func deploymentLabels(d *api.DesiredOnlineDeployment) map[string]string {
	return map[string]string{labelManagedBy: managedByAgent, infv1.LabelEndpoint: d.Endpoint, infv1.LabelDeployment: d.Name}
}

func credentialsLabels(cr string) map[string]string {
	return map[string]string{labelManagedBy: managedByAgent, inference.LabelOnlineDeployment: cr}
}

// buildOnlineEndpoint is the OnlineEndpoint of endpoint object id; e has
// passed checkEndpoint.
func buildOnlineEndpoint(id string, e *api.DesiredOnlineEndpoint) *infv1.OnlineEndpoint {
	cr := endpointObjectName(e.Name)
	oe := &infv1.OnlineEndpoint{
		TypeMeta:   metav1.TypeMeta{APIVersion: infv1.GroupVersion.String(), Kind: infv1.EndpointKind},
		ObjectMeta: metav1.ObjectMeta{Name: cr, Namespace: e.Namespace, Labels: endpointLabels(e, cr)},
		Spec: infv1.OnlineEndpointSpec{
			EndpointID: id,
			Name:       e.Name,
			AuthMode:   e.AuthMode,
			SecretName: cr + keysSuffix,
		},
	}
	if len(e.Traffic) > 0 {
		oe.Spec.Traffic = map[string]int32{}
		for d, pct := range e.Traffic {
			oe.Spec.Traffic[d] = int32(pct)
		}
	}
	return oe
}

// buildOnlineDeployment is the OnlineDeployment of deployment object id; d
// has passed checkDeployment.
func buildOnlineDeployment(id string, d *api.DesiredOnlineDeployment) *infv1.OnlineDeployment {
	cr := deploymentObjectName(d.Endpoint, d.Name)
	ss := d.ScaleSettings
	typ := ss.Type
	if typ == "" {
		typ = api.ScaleDefault
	}
	minInstances := ss.MinInstances
	if typ == api.ScaleTargetUtilization && minInstances == 0 {
		minInstances = d.InstanceCount // the autoscaler starts there
	}
	probe := func(p api.ProbeSettings) infv1.Probe {
		return infv1.Probe{PeriodSeconds: clamp32(p.Period), InitialDelaySeconds: clamp32(p.InitialDelay), TimeoutSeconds: clamp32(p.Timeout),
			SuccessThreshold: clamp32(p.SuccessThreshold), FailureThreshold: clamp32(p.FailureThreshold)}
	}
	od := &infv1.OnlineDeployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: infv1.GroupVersion.String(), Kind: infv1.DeploymentKind},
		ObjectMeta: metav1.ObjectMeta{Name: cr, Namespace: d.Namespace, Labels: deploymentLabels(d)},
		Spec: infv1.OnlineDeploymentSpec{
			DeploymentID: id,
			Name:         d.Name,
			Endpoint:     d.Endpoint,
			Image:        d.Image,
			InstanceType: d.InstanceType,
			Scale: infv1.Scale{
				Type:                     typ,
				InstanceCount:            int32(d.InstanceCount),
				MinInstances:             int32(minInstances),
				MaxInstances:             int32(ss.MaxInstances),
				PollingIntervalSeconds:   int32(ss.PollingInterval),
				TargetUtilizationPercent: int32(ss.TargetUtilizationPercentage),
			},
			Request: infv1.Request{
				TimeoutMS:                int32(d.RequestSettings.RequestTimeoutMS),
				MaxConcurrentPerInstance: int32(d.RequestSettings.MaxConcurrentRequestsPerInstance),
				MaxQueueWaitMS:           int32(d.RequestSettings.MaxQueueWaitMS),
			},
			Liveness:             probe(d.LivenessProbe),
			Readiness:            probe(d.ReadinessProbe),
			SecretName:           cr + credentialsSuffix,
			ModelName:            d.ModelName,
			ModelVersion:         d.ModelVersion,
			EnvironmentVariables: maps.Clone(d.EnvironmentVariables),
			RunDigest:            d.RunDigest,
		},
	}
	if r := d.Resources; r != nil && (len(r.Requests) > 0 || len(r.Limits) > 0) {
		od.Spec.Resources = &infv1.Resources{Requests: maps.Clone(r.Requests), Limits: maps.Clone(r.Limits)}
	}
	if c := d.InferenceConfig; c != nil {
		route := func(r api.Route) infv1.Route { return infv1.Route{Port: clamp32(r.Port), Path: r.Path} }
		od.Spec.InferenceConfig = &infv1.InferenceConfig{Liveness: route(c.LivenessRoute), Readiness: route(c.ReadinessRoute), Scoring: route(c.ScoringRoute)}
	}
	return od
}

// clamp32 keeps a setting the workspace checked within int32; the CRD's
// schema refuses what is out of range anyway.
func clamp32(n int) int32 { return int32(min(max(n, math.MinInt32), math.MaxInt32)) }

// idOf reads spec.<field> of an object: the workspace's id of what it is.
func idOf(u *unstructured.Unstructured, field string) string {
	id, _, _ := unstructured.NestedString(u.Object, "spec", field) // not a string: not one of ours
	return id
}

// applyCR server-side applies obj (its spec and metadata; the status is
// the operator's) after checking that the object of that name, if any, is
// the one of workspace id (spec.<idField>). It returns the object as it is
// now.
func (a *Agent) applyCR(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, idField, id, what string,
	before func(exists bool) error) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	delete(m, "status")
	u := &unstructured.Unstructured{Object: m}
	dropNulls(u.Object)
	ri := a.dyn.Resource(gvr).Namespace(u.GetNamespace())
	live, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", what, err)
	case idOf(live, idField) != id:
		if live.GetDeletionTimestamp() != nil {
			return nil, fmt.Errorf("%s of an earlier one of that name is still being deleted", what)
		}
		return nil, fmt.Errorf("%s exists already for another (%q)", what, idOf(live, idField))
	}
	if err := before(live != nil); err != nil {
		return nil, err
	}
	data, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: new(true)})
	switch {
	case apierrors.IsNotFound(err):
		return nil, errNoInference
	case err != nil:
		return nil, fmt.Errorf("apply %s: %w", what, err)
	}
	if live == nil {
		a.log.Info("created "+what, "namespace", out.GetNamespace(), "name", out.GetName())
	} else if out.GetResourceVersion() != live.GetResourceVersion() {
		a.log.Info("updated "+what, "namespace", out.GetNamespace(), "name", out.GetName())
	}
	return out, nil
}

// applySecret applies a Secret the agent makes for owner (nil: before the
// owner exists).
func (a *Agent) applySecret(ctx context.Context, namespace, name string, labels map[string]string, data map[string][]byte,
	ownerKind string, owner *unstructured.Unstructured) error {
	s := applycorev1.Secret(name, namespace).WithLabels(labels).WithType(corev1.SecretTypeOpaque).WithData(data)
	if owner != nil {
		s.WithOwnerReferences(applymetav1.OwnerReference().WithAPIVersion(infv1.GroupVersion.String()).
			WithKind(ownerKind).WithName(owner.GetName()).WithUID(owner.GetUID()).WithController(true))
	}
	if _, err := a.kube.CoreV1().Secrets(namespace).Apply(ctx, s, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply Secret %s/%s: %w", namespace, name, err)
	}
	return nil
}

// applyOnlineEndpoint makes the OnlineEndpoint and keys Secret of endpoint
// object id, or brings those there in line (traffic, keys and auth mode
// change; applying the same endpoint again writes nothing). The Secret
// comes first, so that the router has the keys once it sees the endpoint.
func (a *Agent) applyOnlineEndpoint(ctx context.Context, id string, e *api.DesiredOnlineEndpoint) error {
	if err := checkEndpoint(e); err != nil {
		return fmt.Errorf("%w: %w", errBadInference, err)
	}
	want := buildOnlineEndpoint(id, e)
	cr := want.Name
	secret := func(owner *unstructured.Unstructured) error {
		return a.applySecret(ctx, e.Namespace, want.Spec.SecretName, endpointLabels(e, cr), endpointSecretData(e), infv1.EndpointKind, owner)
	}
	live, err := a.applyCR(ctx, onlineEndpoints, want, "endpointId", id, fmt.Sprintf("OnlineEndpoint %s/%s of endpoint %s", e.Namespace, cr, e.Name),
		func(exists bool) error {
			if exists {
				return nil
			}
			return secret(nil)
		})
	if err != nil {
		return err
	}
	return secret(live)
}

// applyOnlineDeployment makes the OnlineDeployment and credentials Secret
// of deployment object id, or brings those there in line.
func (a *Agent) applyOnlineDeployment(ctx context.Context, id string, d *api.DesiredOnlineDeployment) error {
	if err := checkDeployment(d); err != nil {
		return fmt.Errorf("%w: %w", errBadInference, err)
	}
	want := buildOnlineDeployment(id, d)
	cr := want.Name
	secret := func(owner *unstructured.Unstructured) error {
		return a.applySecret(ctx, d.Namespace, want.Spec.SecretName, credentialsLabels(cr), deploymentSecretData(a.cfg, d), infv1.DeploymentKind, owner)
	}
	live, err := a.applyCR(ctx, onlineDeployments, want, "deploymentId", id,
		fmt.Sprintf("OnlineDeployment %s/%s of deployment %s/%s", d.Namespace, cr, d.Endpoint, d.Name),
		func(exists bool) error {
			if exists {
				return nil
			}
			// The operator starts the pods as soon as the object exists,
			// and they need the credential.
			return secret(nil)
		})
	if err != nil {
		return err
	}
	return secret(live)
}

// deleteCR deletes the object name of workspace id and the Secret the
// agent made for it (in case the object never came to own it); labels
// tell the Secret is the agent's and this object's.
func (a *Agent) deleteCR(ctx context.Context, gvr schema.GroupVersionResource, namespace, name, idField, id, secretName string,
	secretLabels map[string]string, also func(uid types.UID) error) error {
	ri := a.dyn.Resource(gvr).Namespace(namespace)
	live, err := ri.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err): // gone, or the cluster does not serve the kind
	case err != nil:
		return fmt.Errorf("read %s %s/%s: %w", gvr.Resource, namespace, name, err)
	case idOf(live, idField) != id:
		return nil // another's, Secret included
	default:
		if err := deleted(ri.Delete(ctx, name, deleteOptions(live.GetUID()))); err != nil {
			return fmt.Errorf("delete %s %s/%s: %w", gvr.Resource, namespace, name, err)
		}
		a.log.Info("deleted "+gvr.Resource, "namespace", namespace, "name", name)
		if also != nil {
			if err := also(live.GetUID()); err != nil {
				return err
			}
		}
	}
	s, err := a.kube.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("read Secret %s/%s: %w", namespace, secretName, err)
	}
	for k, v := range secretLabels {
		if s.Labels[k] != v {
			return nil // not made by the agent for this object
		}
	}
	if err := deleted(a.kube.CoreV1().Secrets(namespace).Delete(ctx, s.Name, deleteOptions(s.UID))); err != nil {
		return fmt.Errorf("delete Secret %s/%s: %w", namespace, s.Name, err)
	}
	return nil
}

func (a *Agent) deleteOnlineEndpoint(ctx context.Context, id string, e *api.DesiredOnlineEndpoint) error {
	if e == nil || e.Name == "" || e.Namespace == "" {
		return nil // never applied: checkEndpoint refused it
	}
	cr := endpointObjectName(e.Name)
	return a.deleteCR(ctx, onlineEndpoints, e.Namespace, cr, "endpointId", id, cr+keysSuffix,
		map[string]string{labelManagedBy: managedByAgent, labelEndpointObject: cr}, nil)
}

func (a *Agent) deleteOnlineDeployment(ctx context.Context, id string, d *api.DesiredOnlineDeployment) error {
	if d == nil || d.Name == "" || d.Endpoint == "" || d.Namespace == "" {
		return nil // never applied: checkDeployment refused it
	}
	cr := deploymentObjectName(d.Endpoint, d.Name)
	return a.deleteCR(ctx, onlineDeployments, d.Namespace, cr, "deploymentId", id, cr+credentialsSuffix, credentialsLabels(cr),
		func(uid types.UID) error {
			return a.deleteRunner(ctx, d.Namespace, inference.DeploymentName(d.Endpoint, d.Name), uid)
		})
}

// deleteRunner deletes the apps/v1 Deployment of a deleted OnlineDeployment
// (owner uid). The garbage collector would, but it learns of a kind added
// after it started only at its next discovery resync, up to half a minute
// later: the deployment's pods would serve until then.
func (a *Agent) deleteRunner(ctx context.Context, namespace, name string, owner types.UID) error {
	d, err := a.kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("read Deployment %s/%s: %w", namespace, name, err)
	}
	if c := metav1.GetControllerOf(d); c == nil || c.UID != owner {
		return nil
	}
	if err := deleted(a.kube.AppsV1().Deployments(namespace).Delete(ctx, name, deleteOptions(d.UID))); err != nil {
		return fmt.Errorf("delete Deployment %s/%s: %w", namespace, name, err)
	}
	return nil
}

// applyInference applies the endpoints among changed, then the
// deployments, and returns those to apply again later.
func (a *Agent) applyInference(ctx context.Context, changed map[api.ObjectRef]api.DesiredObject) map[api.ObjectRef]bool {
	retry := map[api.ObjectRef]bool{}
	for _, kind := range []string{api.KindOnlineEndpoint, api.KindOnlineDeployment} {
		for ref, o := range changed {
			if o.Kind != kind {
				continue
			}
			var err error
			if kind == api.KindOnlineEndpoint {
				err = a.applyOnlineEndpoint(ctx, o.ID, o.OnlineEndpoint)
			} else {
				err = a.applyOnlineDeployment(ctx, o.ID, o.OnlineDeployment)
			}
			if err != nil {
				a.log.Error("apply "+kind, "id", o.ID, "err", err)
				if !errors.Is(err, errBadInference) {
					retry[ref] = true
				}
			}
		}
	}
	return retry
}

// deleteInference deletes the deployments among deleted, then the
// endpoints, and returns those whose deletion failed.
func (a *Agent) deleteInference(ctx context.Context, deleted map[api.ObjectRef]api.DesiredObject) map[api.ObjectRef]bool {
	retry := map[api.ObjectRef]bool{}
	for _, kind := range []string{api.KindOnlineDeployment, api.KindOnlineEndpoint} {
		for ref, o := range deleted {
			if o.Kind != kind {
				continue
			}
			var err error
			if kind == api.KindOnlineEndpoint {
				err = a.deleteOnlineEndpoint(ctx, o.ID, o.OnlineEndpoint)
			} else {
				err = a.deleteOnlineDeployment(ctx, o.ID, o.OnlineDeployment)
			}
			if err != nil {
				a.log.Error("delete "+kind, "id", o.ID, "err", err)
				retry[ref] = true
			}
		}
	}
	return retry
}

// wantedInference maps the namespace/name of every cached endpoint's and
// deployment's object to its id.
func (a *Agent) wantedInference() (endpoints, deployments map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	endpoints, deployments = map[string]string{}, map[string]string{}
	for _, o := range a.objects {
		switch {
		case o.Kind == api.KindOnlineEndpoint && o.OnlineEndpoint != nil:
			endpoints[o.OnlineEndpoint.Namespace+"/"+endpointObjectName(o.OnlineEndpoint.Name)] = o.ID
		case o.Kind == api.KindOnlineDeployment && o.OnlineDeployment != nil:
			d := o.OnlineDeployment
			deployments[d.Namespace+"/"+deploymentObjectName(d.Endpoint, d.Name)] = o.ID
		}
	}
	return endpoints, deployments
}

// pruneOrphanInference deletes the OnlineEndpoints, OnlineDeployments and
// Secrets the agent made for endpoints and deployments its cache no longer
// has: after a reset, those deleted while the agent was away, and those
// whose deletion failed.
func (a *Agent) pruneOrphanInference(ctx context.Context) error {
	endpoints, deployments := a.wantedInference()
	sel := labelManagedBy + "=" + managedByAgent
	var errs []error
	prune := func(gvr schema.GroupVersionResource, idField string, wanted map[string]string) {
		list, err := a.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: sel})
		switch {
		case apierrors.IsNotFound(err): // the cluster does not serve the kind: none to prune
			return
		case err != nil:
			errs = append(errs, fmt.Errorf("list %s: %w", gvr.Resource, err))
			return
		}
		for _, o := range list.Items {
			if id := idOf(&o, idField); (id != "" && wanted[o.GetNamespace()+"/"+o.GetName()] == id) || o.GetDeletionTimestamp() != nil {
				continue
			}
			if err := deleted(a.dyn.Resource(gvr).Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), deleteOptions(o.GetUID()))); err != nil {
				errs = append(errs, fmt.Errorf("delete %s %s/%s: %w", gvr.Resource, o.GetNamespace(), o.GetName(), err))
				continue
			}
			a.log.Info("pruned "+gvr.Resource, "namespace", o.GetNamespace(), "name", o.GetName())
			if gvr == onlineDeployments {
				name, _, _ := unstructured.NestedString(o.Object, "spec", "name")
				ep, _, _ := unstructured.NestedString(o.Object, "spec", "endpoint")
				if err := a.deleteRunner(ctx, o.GetNamespace(), inference.DeploymentName(ep, name), o.GetUID()); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	prune(onlineDeployments, "deploymentId", deployments)
	prune(onlineEndpoints, "endpointId", endpoints)
	for _, s := range []struct {
		label  string
		wanted map[string]string
	}{{inference.LabelOnlineDeployment, deployments}, {labelEndpointObject, endpoints}} {
		secrets, err := a.kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: sel + "," + s.label})
		if err != nil {
			errs = append(errs, fmt.Errorf("list Secrets: %w", err))
			continue
		}
		for _, sec := range secrets.Items {
			if _, ok := s.wanted[sec.Namespace+"/"+sec.Labels[s.label]]; ok || sec.DeletionTimestamp != nil {
				continue
			}
			if err := deleted(a.kube.CoreV1().Secrets(sec.Namespace).Delete(ctx, sec.Name, deleteOptions(sec.UID))); err != nil {
				errs = append(errs, fmt.Errorf("delete Secret %s/%s: %w", sec.Namespace, sec.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// dropNulls removes the null fields of a converted typed object (a zero
// creationTimestamp), which an apply would otherwise send.
func dropNulls(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNulls(v)
		}
	}
}
