package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

func TestHTTPClientRejectsBadProxy(t *testing.T) {
	for _, p := range []string{"socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://"} {
		if _, err := (Config{Proxy: p}).httpClient(); err == nil || !strings.Contains(err.Error(), "want http://host:port") {
			t.Errorf("proxy %q: error %v", p, err)
		}
	}
}

func TestPodProblem(t *testing.T) {
	waiting := func(reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	crash := waiting("CrashLoopBackOff", "back-off")
	crash.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error", Message: "bad flag"}
	crash.RestartCount = crashesBeforeFailed
	firstCrash := crash
	firstCrash.RestartCount = 1
	cases := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"running", corev1.Pod{}, ""},
		{"still creating", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("ContainerCreating", "")}}}, ""},
		{"crash loop", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{crash}}},
			"container c: CrashLoopBackOff (last exit code 2, Error: bad flag)"},
		{"restarting after one crash", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{firstCrash}}}, ""},
		{"no command", corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("CreateContainerConfigError", "needs a command")}}},
			"container c: CreateContainerConfigError: needs a command"},
		{"unschedulable", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes match"}}}}, "Unschedulable: 0/1 nodes match"},
		{"init container", corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{waiting("ImagePullBackOff", "")}}},
			"container c: ImagePullBackOff"},
	}
	for _, tc := range cases {
		if got := podProblem(&tc.pod); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestJudge covers readiness of every kind an extension may render, as the
// live object reads back from the apiserver.
func TestJudge(t *testing.T) {
	cases := []struct {
		name string
		obj  string
		want verdict
	}{
		{"a ConfigMap is ready when it exists", `{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}`, ready},
		{"an object being deleted is not", `{apiVersion: v1, kind: ConfigMap, metadata: {name: x, deletionTimestamp: "2026-01-01T00:00:00Z"}}`, waiting},

		{"Deployment rolled out", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2},
			status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2,
			conditions: [{type: Available, status: "True"}, {type: Progressing, status: "True", reason: NewReplicaSetAvailable}]}}`, ready},
		{"Deployment whose new spec the controller has not seen", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 3}, spec: {replicas: 2},
			status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2,
			conditions: [{type: Available, status: "True"}, {type: Progressing, status: "True", reason: NewReplicaSetAvailable}]}}`, waiting},
		{"Deployment with a replica not yet available", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 1}, spec: {replicas: 2},
			status: {observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1,
			conditions: [{type: Progressing, status: "True", reason: ReplicaSetUpdated}]}}`, waiting},
		{"Deployment past its progress deadline", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 1}, spec: {replicas: 1},
			status: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, conditions: [{type: Progressing, status: "False", reason: ProgressDeadlineExceeded}]}}`, failed},

		{"DaemonSet on every node", `{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: ds, generation: 1},
			status: {observedGeneration: 1, desiredNumberScheduled: 1, currentNumberScheduled: 1, updatedNumberScheduled: 1, numberReady: 1, numberAvailable: 1}}`, ready},
		{"DaemonSet with a pod not ready", `{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: ds, generation: 1},
			status: {observedGeneration: 1, desiredNumberScheduled: 1, currentNumberScheduled: 1, updatedNumberScheduled: 1, numberReady: 0, numberAvailable: 0}}`, waiting},

		{"StatefulSet rolled out", `{apiVersion: apps/v1, kind: StatefulSet, metadata: {name: s, generation: 1}, spec: {replicas: 1},
			status: {observedGeneration: 1, replicas: 1, readyReplicas: 1, currentReplicas: 1, updatedReplicas: 1, availableReplicas: 1, currentRevision: r1, updateRevision: r1}}`, ready},
		{"StatefulSet starting", `{apiVersion: apps/v1, kind: StatefulSet, metadata: {name: s, generation: 1}, spec: {replicas: 1},
			status: {observedGeneration: 1, replicas: 1, readyReplicas: 0, currentReplicas: 1, updatedReplicas: 1, currentRevision: r1, updateRevision: r1}}`, waiting},

		{"Job still running", `{apiVersion: batch/v1, kind: Job, metadata: {name: j}, status: {startTime: "2026-01-01T00:00:00Z", active: 1}}`, waiting},
		{"Job complete", `{apiVersion: batch/v1, kind: Job, metadata: {name: j}, status: {startTime: "2026-01-01T00:00:00Z", succeeded: 1,
			conditions: [{type: Complete, status: "True"}]}}`, ready},
		{"Job failed", `{apiVersion: batch/v1, kind: Job, metadata: {name: j}, status: {startTime: "2026-01-01T00:00:00Z", failed: 6,
			conditions: [{type: Failed, status: "True", reason: BackoffLimitExceeded}]}}`, failed},

		{"CRD established", `{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: ws.test.outpost.dev},
			status: {conditions: [{type: NamesAccepted, status: "True"}, {type: Established, status: "True"}]}}`, ready},
		{"CRD not yet established", `{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: ws.test.outpost.dev},
			status: {conditions: [{type: NamesAccepted, status: "True"}]}}`, waiting},
		{"CRD whose names conflict", `{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: ws.test.outpost.dev},
			status: {conditions: [{type: NamesAccepted, status: "False", reason: NameConflict}]}}`, failed},

		{"ClusterIP Service", `{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {type: ClusterIP, clusterIP: 10.0.0.1}}`, ready},
		{"LoadBalancer Service without an address", `{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {type: LoadBalancer, clusterIP: 10.0.0.1}}`, waiting},
		{"LoadBalancer Service with an address", `{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {type: LoadBalancer, clusterIP: 10.0.0.1},
			status: {loadBalancer: {ingress: [{ip: 127.0.0.1}]}}}`, ready},

		{"custom resource not Ready", `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: w, generation: 1},
			status: {observedGeneration: 1, conditions: [{type: Ready, status: "False", reason: Starting}]}}`, waiting},
		{"custom resource Stalled", `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: w, generation: 1},
			status: {observedGeneration: 1, conditions: [{type: Stalled, status: "True", reason: BadSpec}]}}`, failed},
		{"custom resource Ready", `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: w, generation: 1},
			status: {observedGeneration: 1, conditions: [{type: Ready, status: "True"}]}}`, ready},
		{"custom resource without status", `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: w}}`, ready},
	}
	name := map[verdict]string{waiting: "waiting", ready: "ready", failed: "failed"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got, msg := judge(obj(t, tc.obj)); got != tc.want {
				t.Errorf("%s (%s), want %s", name[got], msg, name[tc.want])
			}
		})
	}
}

// testAgent is an agent on the package's cluster, without a workspace.
func testAgent(t *testing.T) *Agent {
	t.Helper()
	kube, dyn, err := clients(clustertest.Cluster.REST)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(clustertest.Cluster.REST)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{kube: kube, dyn: dyn, log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
	ensureNamespace(t, a, Namespace)
	return a
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func ensureNamespace(t *testing.T, a *Agent, name string) {
	t.Helper()
	_, err := a.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func obj(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	// Through JSON, as the apiserver's objects come: numbers are int64 then.
	data, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
	return u
}

// syncExtension does for one extension what the agent does with its render: apply
// the objects with their inventory, then prune what they no longer hold.
func syncExtension(t *testing.T, a *Agent, ext string, objs ...*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	inv, err := a.inventory(ctx, ext, objs)
	if err != nil {
		t.Fatal(err)
	}
	all := append([]*unstructured.Unstructured{inv}, objs...)
	if err := a.applyObjects(ctx, all); err != nil {
		t.Fatal(err)
	}
	if err := a.prune(ctx, ext, all); err != nil {
		t.Fatal(err)
	}
}

// gone says whether the object is deleted or on its way out.
func gone(t *testing.T, a *Agent, o *unstructured.Unstructured) bool {
	t.Helper()
	gvr, err := a.gvr(o)
	if err != nil {
		t.Fatal(err)
	}
	ri := a.dyn.Resource(gvr)
	var live *unstructured.Unstructured
	if o.GetNamespace() != "" {
		live, err = ri.Namespace(o.GetNamespace()).Get(context.Background(), o.GetName(), metav1.GetOptions{})
	} else {
		live, err = ri.Get(context.Background(), o.GetName(), metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return live.GetDeletionTimestamp() != nil
}

func TestPruneFollowsWhatWasRendered(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	crds := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	crd := obj(t, `{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: widgets.test.outpost.dev},
		spec: {group: test.outpost.dev, scope: Namespaced, names: {plural: widgets, singular: widget, kind: Widget},
		versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]}}`)
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "Widget CRD established", func() error {
		live, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v, _ := judge(live); v != ready {
			return fmt.Errorf("not established")
		}
		return nil
	})

	labelled := func(ext string) string { return fmt.Sprintf(`labels: {outpost.dev/extension: %s}`, ext) }
	ns := obj(t, `{apiVersion: v1, kind: Namespace, metadata: {name: prune-test, `+labelled("ml")+`}}`)
	cm := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: settings, namespace: prune-test, `+labelled("ml")+`}, data: {a: b}}`)
	widget := obj(t, `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: w, namespace: prune-test, `+labelled("ml")+`}, spec: {size: 1}}`)
	pdb := obj(t, `{apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: p, namespace: prune-test, `+labelled("ml")+`},
		spec: {minAvailable: 1, selector: {matchLabels: {app: p}}}}`)
	// Objects of the same kind that are not the extension's.
	ensureNamespace(t, a, "prune-other")
	others := []*unstructured.Unstructured{
		obj(t, `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: of-another-extension, namespace: prune-other, `+labelled("other")+`}}`),
		obj(t, `{apiVersion: test.outpost.dev/v1, kind: Widget, metadata: {name: of-the-user, namespace: prune-other}}`),
	}
	if err := a.applyObjects(ctx, others); err != nil {
		t.Fatal(err)
	}

	syncExtension(t, a, "ml", ns, cm, widget, pdb)
	for _, o := range []*unstructured.Unstructured{ns, cm, widget, pdb} {
		if gone(t, a, o) {
			t.Fatalf("%s %s missing after the first apply", o.GetKind(), o.GetName())
		}
	}

	// The next render no longer has the Widget nor the PodDisruptionBudget:
	// the agent must find them although nothing else of their kinds is left.
	syncExtension(t, a, "ml", ns, cm)
	for _, o := range []*unstructured.Unstructured{widget, pdb} {
		if !gone(t, a, o) {
			t.Errorf("%s %s was not pruned", o.GetKind(), o.GetName())
		}
	}
	for _, o := range append([]*unstructured.Unstructured{ns, cm}, others...) {
		if gone(t, a, o) {
			t.Errorf("%s %s was pruned, but it is still wanted or not the extension's", o.GetKind(), o.GetName())
		}
	}

	// The extension is deleted: everything of it goes, its inventory too.
	if got, err := a.installedExtensions(ctx); err != nil || !slices.Equal(got, []string{"ml"}) {
		t.Fatalf("installed extensions %q (%v), want [ml]", got, err)
	}
	if err := a.pruneRemoved(ctx, map[string]bool{"other": true}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*unstructured.Unstructured{ns, cm} {
		if !gone(t, a, o) {
			t.Errorf("%s %s left after the extension was deleted", o.GetKind(), o.GetName())
		}
	}
	for _, o := range others {
		if gone(t, a, o) {
			t.Errorf("%s %s was pruned with an extension it does not belong to", o.GetKind(), o.GetName())
		}
	}
	if got, err := a.installedExtensions(ctx); err != nil || len(got) != 0 {
		t.Fatalf("installed extensions after the delete: %q (%v)", got, err)
	}
}

func TestEvaluateJudgesEveryRenderedObject(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	ensureNamespace(t, a, "evaluate-test")
	present := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: present, namespace: evaluate-test}}`)
	absent := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: absent, namespace: evaluate-test}}`)
	deployment := func(name, nodeSelector string) *unstructured.Unstructured {
		return obj(t, fmt.Sprintf(`{apiVersion: apps/v1, kind: Deployment, metadata: {name: %[1]s, namespace: evaluate-test},
			spec: {replicas: 1, selector: {matchLabels: {app: %[1]s}}, template: {metadata: {labels: {app: %[1]s}},
			spec: {nodeSelector: {%[2]s}, terminationGracePeriodSeconds: 1, containers: [{name: c, image: busybox, command: [sleep, "3600"]}]}}}}`, name, nodeSelector))
	}
	runs, stuck := deployment("runs", ""), deployment("stuck", "pool: nowhere")
	if err := a.applyObjects(ctx, []*unstructured.Unstructured{present, runs, stuck}); err != nil {
		t.Fatal(err)
	}
	ext := api.DesiredExtension{Name: "ml", Generation: 1}

	rep := a.evaluate(ctx, ext, applied{components: []*unstructured.Unstructured{present, absent}})
	if rep.InstallState != api.InstallPending || rep.Message != "1/2 components ready; waiting for ConfigMap absent" {
		t.Errorf("a rendered ConfigMap missing: %s %q", rep.InstallState, rep.Message)
	}
	clustertest.Eventually(t, 60*time.Second, "a Deployment that runs makes the extension Installed", func() error {
		rep := a.evaluate(ctx, ext, applied{components: []*unstructured.Unstructured{present, runs}})
		if rep.InstallState != api.InstallInstalled || rep.Message != "2/2 components ready" {
			return fmt.Errorf("%s %q", rep.InstallState, rep.Message)
		}
		return nil
	})
	clustertest.Eventually(t, 60*time.Second, "a Deployment that cannot run fails the install with its pod's reason", func() error {
		rep := a.evaluate(ctx, ext, applied{components: []*unstructured.Unstructured{present, runs, stuck}})
		if rep.InstallState != api.InstallFailed || !strings.HasPrefix(rep.Message, "stuck: pod stuck-") || !strings.Contains(rep.Message, "Unschedulable") {
			return fmt.Errorf("%s %q", rep.InstallState, rep.Message)
		}
		return nil
	})
}
