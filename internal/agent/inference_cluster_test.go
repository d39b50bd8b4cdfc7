package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api"
	infv1 "outpost.dev/outpost/api/inference/v1alpha1"
	trainingv1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/inference"
)

// installInferenceCRDs applies the inference CRDs as the extension renders
// them (so that what the agent writes meets their schemas) and waits until
// they serve.
func installInferenceCRDs(t *testing.T, a *Agent) {
	t.Helper()
	objs, err := extension.Render(extension.Settings{EnableInference: true, AllowInsecureConnections: true},
		extension.RenderOptions{Name: "ml", Image: "outpost:test", NodeCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	var crds []*unstructured.Unstructured
	for _, o := range objs {
		if n := o.GetName(); n == extension.OnlineEndpointCRD || n == extension.OnlineDeploymentCRD {
			crds = append(crds, o)
		}
	}
	if err := a.applyObjects(context.Background(), crds); err != nil {
		t.Fatal(err)
	}
	ri := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, crd := range crds {
		clustertest.Eventually(t, 30*time.Second, crd.GetName()+" established", func() error {
			live, err := ri.Get(context.Background(), crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if v, msg := judge(live); v != ready {
				return errors.New(msg)
			}
			return nil
		})
	}
}

func deploymentsOf(rep api.AgentReport, id string) (api.DeploymentReport, bool) {
	for _, d := range rep.Deployments {
		if d.ID == id {
			return d, true
		}
	}
	return api.DeploymentReport{}, false
}

// TestInferenceOnTheCluster drives a running agent through an endpoint's
// and a deployment's life as the workspace would: before and after their
// CRDs exist, the keys and credentials, status reports, a traffic change,
// a restart, deletion, and a reset that finds orphans.
func TestInferenceOnTheCluster(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	const ns = "inf-test"
	oes, ods := a.dyn.Resource(onlineEndpoints), a.dyn.Resource(onlineDeployments)
	get := func(ri schema.GroupVersionResource, name string) (*unstructured.Unstructured, error) {
		return a.dyn.Resource(ri).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	}
	secret := func(name string) (*corev1.Secret, error) {
		return a.kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	}
	ws := newFakeWorkspace(t)
	ws.put(api.DesiredObject{Kind: api.KindCompute, ID: "/resourceGroups/rg/workspaces/ws/computes/k8s", Generation: 1,
		Compute: &api.DesiredCompute{Name: "k8s", Namespace: ns, CreateNamespace: true}})
	stop := startAgent(t, ws)

	// Before the extension installed the CRDs, the Secrets are made and
	// the objects wait.
	crdsWereThere := crdExists(t, a, extension.OnlineDeploymentCRD)
	ep := endpointObject("My-Endpoint", 1, map[string]int{"blue": 100})
	dep := deploymentObject("My-Endpoint", "blue", 1)
	epCR, depCR := inference.DNSLabel("My-Endpoint"), inference.DeploymentName("My-Endpoint", "blue")
	ws.put(ep)
	ws.put(dep)
	if !crdsWereThere {
		clustertest.Eventually(t, 30*time.Second, "the Secrets, made before their objects", func() error {
			if _, err := secret(epCR + "-keys"); err != nil {
				return err
			}
			_, err := secret(depCR + "-credentials")
			return err
		})
		installInferenceCRDs(t, a)
	}
	var oe, od *unstructured.Unstructured
	clustertest.Eventually(t, 60*time.Second, "OnlineEndpoint and OnlineDeployment (the failed apply retried)", func() (err error) {
		if oe, err = get(onlineEndpoints, epCR); err != nil {
			return err
		}
		od, err = get(onlineDeployments, depCR)
		return err
	})
	if got, want := idOf(oe, "endpointId"), ep.ID; got != want {
		t.Errorf("endpointId %q, want %q", got, want)
	}
	if traffic, _, _ := unstructured.NestedMap(oe.Object, "spec", "traffic"); fmt.Sprint(traffic) != "map[blue:100]" {
		t.Errorf("traffic %v", traffic)
	}
	if name, _, _ := unstructured.NestedString(od.Object, "spec", "name"); name != "blue" || idOf(od, "deploymentId") != dep.ID {
		t.Errorf("OnlineDeployment spec.name %q id %q", name, idOf(od, "deploymentId"))
	}
	if sn, _, _ := unstructured.NestedString(od.Object, "spec", "secretName"); sn != depCR+"-credentials" {
		t.Errorf("secretName %q", sn)
	}
	clustertest.Eventually(t, 30*time.Second, "the Secrets owned by their objects", func() error {
		keys, err := secret(epCR + "-keys")
		if err != nil {
			return err
		}
		if len(keys.OwnerReferences) != 1 || keys.OwnerReferences[0].UID != oe.GetUID() || keys.OwnerReferences[0].Kind != "OnlineEndpoint" {
			return fmt.Errorf("keys owners %+v", keys.OwnerReferences)
		}
		if string(keys.Data["primaryKey"]) != "primary-My-Endpoint" || string(keys.Data["tokenKey"]) != "token-key-My-Endpoint" ||
			keys.Labels[infv1.LabelEndpoint] != "My-Endpoint" {
			return fmt.Errorf("keys Secret: labels %v, data keys %v", keys.Labels, slices.Sorted(maps.Keys(keys.Data)))
		}
		creds, err := secret(depCR + "-credentials")
		if err != nil {
			return err
		}
		if len(creds.OwnerReferences) != 1 || creds.OwnerReferences[0].UID != od.GetUID() || creds.OwnerReferences[0].Kind != "OnlineDeployment" {
			return fmt.Errorf("credentials owners %+v", creds.OwnerReferences)
		}
		wantURL := ws.srv.URL + "/deployrun/v1/resourceGroups/rg/workspaces/ws/onlineEndpoints/My-Endpoint/deployments/blue"
		if string(creds.Data[infv1.EnvDeploymentURL]) != wantURL || string(creds.Data[infv1.EnvDeploymentToken]) != "credential-of-blue" ||
			string(creds.Data[infv1.EnvDeploymentCA]) != string(ws.caPEM()) || string(creds.Data[trainingv1.EnvProxy]) != "http://proxy.test:3128" {
			return fmt.Errorf("credentials not as wanted (keys %v)", slices.Sorted(maps.Keys(creds.Data)))
		}
		if _, ok := creds.Labels[infv1.LabelEndpoint]; ok {
			return fmt.Errorf("credentials labelled %v: the router would read them", creds.Labels)
		}
		return nil
	})

	// The operator's status reaches the workspace at once (the heartbeat
	// is a minute).
	setStatus := func(status string) time.Time {
		t.Helper()
		live, err := get(onlineDeployments, depCR)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := yaml.Unmarshal([]byte(status), &st); err != nil {
			t.Fatal(err)
		}
		live.Object["status"] = st
		if _, err := ods.Namespace(ns).UpdateStatus(ctx, live, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	from := ws.reportCount()
	changedAt := setStatus(`{phase: Creating, replicas: 2, readyReplicas: 1}`)
	got := ws.waitReport(t, from, 10*time.Second, "the report of Creating", func(r api.AgentReport) error {
		if d, ok := deploymentsOf(r, dep.ID); !ok || d.Phase != "Creating" || d.Instances != 2 || d.ReadyInstances != 1 {
			return fmt.Errorf("deployments %+v", r.Deployments)
		}
		return nil
	})
	if d := got.at.Sub(changedAt); d > 5*time.Second {
		t.Errorf("the status change took %s to be reported", d)
	}
	from = ws.reportCount()
	setStatus(`{phase: Failed, reason: InitFailed, message: "Traceback: ValueError", replicas: 2, readyReplicas: 0}`)
	ws.waitReport(t, from, 10*time.Second, "the report of Failed", func(r api.AgentReport) error {
		if d, ok := deploymentsOf(r, dep.ID); !ok || d.Phase != "Failed" || d.Reason != "InitFailed" || d.Message != "Traceback: ValueError" {
			return fmt.Errorf("deployments %+v", r.Deployments)
		}
		return nil
	})

	// A traffic change updates the endpoint in place; the next reports do
	// not repeat a deployment state the workspace has.
	from = ws.reportCount()
	ws.put(endpointObject("My-Endpoint", 2, map[string]int{"blue": 90, "green": 10}))
	clustertest.Eventually(t, 30*time.Second, "the new traffic", func() error {
		live, err := get(onlineEndpoints, epCR)
		if err != nil {
			return err
		}
		if tr, _, _ := unstructured.NestedMap(live.Object, "spec", "traffic"); fmt.Sprint(tr) != "map[blue:90 green:10]" {
			return fmt.Errorf("traffic %v", tr)
		}
		if live.GetUID() != oe.GetUID() {
			return errors.New("OnlineEndpoint made again")
		}
		return nil
	})
	rev := ws.revision()
	ws.waitReport(t, from, 30*time.Second, "the report after the change", func(r api.AgentReport) error {
		if r.Revision < rev {
			return fmt.Errorf("revision %d", r.Revision)
		}
		if len(r.Deployments) != 0 {
			t.Errorf("a report repeats unchanged deployments: %+v", r.Deployments)
		}
		return nil
	})

	// An agent killed and started again writes nothing, and its first
	// report carries every deployment.
	stop()
	versions := func() map[string]string {
		out := map[string]string{}
		for _, x := range []struct {
			gvr  schema.GroupVersionResource
			name string
		}{{onlineEndpoints, epCR}, {onlineDeployments, depCR}} {
			o, err := get(x.gvr, x.name)
			if err != nil {
				t.Fatal(err)
			}
			out[x.name] = string(o.GetUID()) + "@" + o.GetResourceVersion()
		}
		for _, name := range []string{epCR + "-keys", depCR + "-credentials"} {
			s, err := secret(name)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(s.UID) + "@" + s.ResourceVersion
		}
		return out
	}
	before := versions()
	from = ws.reportCount()
	stop = startAgent(t, ws)
	ws.waitReport(t, from, 30*time.Second, "the restarted agent's report of every deployment", func(r api.AgentReport) error {
		if d, ok := deploymentsOf(r, dep.ID); !ok || d.Phase != "Failed" {
			return fmt.Errorf("deployments %+v", r.Deployments)
		}
		return nil
	})
	rev = ws.revision()
	ws.waitReport(t, from, 30*time.Second, "the restarted agent's report of its applied state", func(r api.AgentReport) error {
		if r.Revision < rev {
			return fmt.Errorf("revision %d", r.Revision)
		}
		return nil
	})
	if after := versions(); !maps.Equal(before, after) {
		t.Errorf("the restarted agent wrote:\n%v\n%v", before, after)
	}

	// A deleted deployment loses its object, Secret and the Deployment
	// that ran it (made here as the operator makes it).
	runner := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: depCR, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: infv1.GroupVersion.String(), Kind: infv1.DeploymentKind, Name: depCR, UID: od.GetUID(), Controller: new(true)}}},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "runner"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "runner"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: "pause"}}}},
		},
	}
	if _, err := a.kube.AppsV1().Deployments(ns).Create(ctx, runner, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ws.remove(dep.Ref(), true)
	gone := func(what string, get func() error) {
		t.Helper()
		clustertest.Eventually(t, 30*time.Second, what+" deleted", func() error {
			if err := get(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
	}
	gone("OnlineDeployment", func() error { _, err := get(onlineDeployments, depCR); return err })
	gone("credentials Secret", func() error { _, err := secret(depCR + "-credentials"); return err })
	gone("the Deployment that ran it", func() error {
		_, err := a.kube.AppsV1().Deployments(ns).Get(ctx, depCR, metav1.GetOptions{})
		return err
	})
	if _, err := get(onlineEndpoints, epCR); err != nil {
		t.Errorf("the endpoint went with its deployment: %v", err)
	}

	// After a reset, what the agent made for endpoints and deployments the
	// workspace no longer has goes; objects it did not make stay.
	orphan := endpointObject("orphan", 1, nil)
	ws.put(orphan)
	clustertest.Eventually(t, 30*time.Second, "OnlineEndpoint orphan", func() error { _, err := get(onlineEndpoints, "orphan"); return err })
	foreign := obj(t, `{apiVersion: inference.outpost.dev/v1alpha1, kind: OnlineEndpoint, metadata: {name: users-own, namespace: inf-test},
		spec: {endpointId: /elsewhere, name: users-own, authMode: key, secretName: theirs}}`)
	stray := obj(t, `{apiVersion: inference.outpost.dev/v1alpha1, kind: OnlineDeployment, metadata: {name: stray, namespace: inf-test,
		labels: {app.kubernetes.io/managed-by: outpost-agent}},
		spec: {deploymentId: /resourceGroups/rg/workspaces/ws/onlineEndpoints/x/deployments/stray, name: stray, endpoint: x, image: x,
		secretName: stray-credentials, scale: {type: default, instanceCount: 1}, request: {timeoutMs: 1, maxConcurrentPerInstance: 1, maxQueueWaitMs: 0}}}`)
	if _, err := oes.Namespace(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ods.Namespace(ns).Create(ctx, stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	strayCreds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "stray-credentials", Namespace: ns,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "outpost-agent", inference.LabelOnlineDeployment: "stray"}}}
	if _, err := a.kube.CoreV1().Secrets(ns).Create(ctx, strayCreds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ws.remove(orphan.Ref(), false)
	gone("orphan OnlineEndpoint", func() error { _, err := get(onlineEndpoints, "orphan"); return err })
	gone("orphan keys Secret", func() error { _, err := secret("orphan-keys"); return err })
	gone("stray OnlineDeployment", func() error { _, err := get(onlineDeployments, "stray"); return err })
	gone("stray Secret", func() error { _, err := secret("stray-credentials"); return err })
	if _, err := get(onlineEndpoints, "users-own"); err != nil {
		t.Errorf("an OnlineEndpoint the agent did not make: %v", err)
	}
	if _, err := get(onlineEndpoints, epCR); err != nil {
		t.Errorf("an endpoint the workspace still has was pruned: %v", err)
	}
	stop()
}

// TestInferenceRouterFacts reads where the router answers from its
// Service, settings and Deployment, for each Service type.
func TestInferenceRouterFacts(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	ensureNamespace(t, a, extension.Namespace)
	svcs, cms := a.kube.CoreV1().Services(extension.Namespace), a.kube.CoreV1().ConfigMaps(extension.Namespace)
	if got := a.inferenceRouter(ctx); got != nil {
		t.Fatalf("no router Service, yet facts %+v", got)
	}
	const certPEM = "-----BEGIN CERTIFICATE-----\nrouter\n-----END CERTIFICATE-----\n"
	if _, err := a.kube.CoreV1().Secrets(extension.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "facts-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte(certPEM), "tls.key": []byte("key")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: extension.RouterConfigName},
		Data: map[string]string{"https": "true", "tlsSecret": "facts-tls", "serviceType": "ClusterIP", "replicas": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := svcs.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "azureml-fe"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "azureml-fe"},
		Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svcs.Delete(context.Background(), "azureml-fe", metav1.DeleteOptions{})
		cms.Delete(context.Background(), extension.RouterConfigName, metav1.DeleteOptions{})
		a.kube.CoreV1().Secrets(extension.Namespace).Delete(context.Background(), "facts-tls", metav1.DeleteOptions{})
		a.kube.AppsV1().Deployments(extension.Namespace).Delete(context.Background(), "azureml-fe", metav1.DeleteOptions{})
	})
	r := a.inferenceRouter(ctx)
	if r == nil || r.BaseURL != "https://"+svc.Spec.ClusterIP || r.CertificatePEM != certPEM || r.Ready {
		t.Errorf("ClusterIP: %+v, want https://%s with the certificate, not ready", r, svc.Spec.ClusterIP)
	}

	// NodePort: the node's address (the local node's is 127.0.0.1).
	svc.Spec.Type = corev1.ServiceTypeNodePort
	if svc, err = svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := a.inferenceRouter(ctx); r == nil || r.BaseURL != fmt.Sprintf("https://127.0.0.1:%d", svc.Spec.Ports[0].NodePort) {
		t.Errorf("NodePort %d: %+v", svc.Spec.Ports[0].NodePort, r)
	}

	// HTTP, behind a load balancer: its address, once it has one.
	cm.Data = map[string]string{"https": "false", "serviceType": "LoadBalancer", "replicas": "1"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: svc.Spec.Ports[0].NodePort}}
	if svc, err = svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "the load balancer's address", func() error {
		if r := a.inferenceRouter(ctx); r == nil || !strings.HasPrefix(r.BaseURL, "http://") || r.CertificatePEM != "" {
			return fmt.Errorf("facts %+v", r)
		}
		return nil
	})
	live, err := svcs.Get(ctx, "azureml-fe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := a.inferenceRouter(ctx); len(live.Status.LoadBalancer.Ingress) == 0 || r.BaseURL != "http://"+live.Status.LoadBalancer.Ingress[0].IP {
		t.Errorf("LoadBalancer %+v: %+v", live.Status.LoadBalancer, r)
	}

	// Ready once a replica of the router's Deployment is.
	fe := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "azureml-fe", Namespace: extension.Namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "facts-fe"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "facts-fe"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: "pause"}}}},
		},
	}
	if _, err := a.kube.AppsV1().Deployments(extension.Namespace).Create(ctx, fe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 60*time.Second, "the router ready", func() error {
		if r := a.facts(ctx).InferenceRouter; r == nil || !r.Ready {
			return fmt.Errorf("facts %+v", r)
		}
		return nil
	})
}
