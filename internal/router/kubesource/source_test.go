package kubesource

import (
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	inferencev1 "outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/router"
)

func unstructuredOf(t *testing.T, o runtime.Object) runtime.Object {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func readyPod(ns, name, ep, dep, ip string, ready bool, labels ...string) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	l := map[string]string{inferencev1.LabelEndpoint: ep, inferencev1.LabelDeployment: dep}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Status:     corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func TestBuildTable(t *testing.T) {
	old := metav1.NewTime(time.Now().Add(-time.Hour))
	ep := &inferencev1.OnlineEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "cr-ep", CreationTimestamp: old},
		Spec: inferencev1.OnlineEndpointSpec{Name: "ep", AuthMode: "Key", SecretName: "ep-keys",
			Traffic: map[string]int32{"blue": 90, "green": 10}},
	}
	// A later endpoint of the same name elsewhere is not routed to.
	dup := &inferencev1.OnlineEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "cr-ep", CreationTimestamp: metav1.Now()},
		Spec:       inferencev1.OnlineEndpointSpec{Name: "ep", AuthMode: "key", SecretName: "ep-keys"},
	}
	tok := &inferencev1.OnlineEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "cr-tok"},
		Spec:       inferencev1.OnlineEndpointSpec{Name: "tok", AuthMode: "AML_Token", SecretName: "tok-keys"},
	}
	blue := &inferencev1.OnlineDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "cr-ep-blue"},
		Spec: inferencev1.OnlineDeploymentSpec{Name: "blue", Endpoint: "ep",
			Request: inferencev1.Request{TimeoutMS: 3000, MaxConcurrentPerInstance: 4, MaxQueueWaitMS: 250}},
	}
	green := &inferencev1.OnlineDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "cr-ep-green"},
		Spec: inferencev1.OnlineDeploymentSpec{Name: "green", Endpoint: "ep",
			InferenceConfig: &inferencev1.InferenceConfig{Scoring: inferencev1.Route{Port: 8080, Path: "predict"}}},
	}
	orphan := &inferencev1.OnlineDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "x"},
		Spec:       inferencev1.OnlineDeploymentSpec{Name: "red", Endpoint: "ep"},
	}
	secrets := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	secrets.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "ep-keys"},
		Data: map[string][]byte{inferencev1.SecretPrimaryKey: []byte("k1"), inferencev1.SecretSecondaryKey: []byte("k2")}})
	secrets.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "tok-keys"},
		Data: map[string][]byte{inferencev1.SecretTokenKey: []byte("signing")}})
	deleting := readyPod("team", "blue-z", "ep", "blue", "10.0.0.9", true)
	deleting.DeletionTimestamp = &old
	pods := []*corev1.Pod{
		readyPod("team", "blue-b", "ep", "blue", "10.0.0.2", true),
		readyPod("team", "blue-a", "ep", "blue", "10.0.0.1", true),
		readyPod("team", "blue-c", "ep", "blue", "10.0.0.3", false),
		readyPod("team", "blue-d", "ep", "blue", "", true),
		deleting,
		readyPod("team", "green-a", "ep", "green", "fd00::5", true),
		readyPod("other", "blue-x", "ep", "blue", "10.9.9.9", true), // another namespace's
	}
	own := []*corev1.Pod{
		readyPod("azureml", "fe-1", "", "", "10.1.0.1", true),
		readyPod("azureml", "fe-2", "", "", "10.1.0.2", true),
		readyPod("azureml", "fe-3", "", "", "10.1.0.3", false),
	}
	var eps, deps []runtime.Object
	for _, o := range []runtime.Object{dup, ep, tok} {
		eps = append(eps, unstructuredOf(t, o))
	}
	for _, o := range []runtime.Object{blue, green, orphan} {
		deps = append(deps, unstructuredOf(t, o))
	}
	tab, err := buildTable(slog.New(slog.DiscardHandler), eps, deps, corelisters.NewSecretLister(secrets), pods, own)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Replicas != 2 {
		t.Errorf("R = %d, want the 2 ready router pods", tab.Replicas)
	}
	e := tab.Endpoints["ep"]
	if e == nil || e.Namespace != "team" || e.AuthMode != "key" || e.KeysSource != "team/ep-keys" ||
		len(e.Keys) != 2 || e.Keys[0] != "k1" || e.Keys[1] != "k2" || e.Traffic["blue"] != 90 || e.Traffic["green"] != 10 {
		t.Fatalf("endpoint ep: %+v", e)
	}
	if len(e.Deployments) != 2 {
		t.Fatalf("deployments %v, want blue and green", e.Deployments)
	}
	b := e.Deployments["blue"]
	want := []router.Instance{{Name: "blue-a", Addr: "10.0.0.1:5001", ScoringPath: "/score"}, {Name: "blue-b", Addr: "10.0.0.2:5001", ScoringPath: "/score"}}
	if b.Timeout != 3*time.Second || b.MaxConcurrent != 4 || b.MaxQueueWait != 250*time.Millisecond || len(b.Instances) != 2 ||
		b.Instances[0] != want[0] || b.Instances[1] != want[1] {
		t.Errorf("blue: %+v", b)
	}
	g := e.Deployments["green"]
	if len(g.Instances) != 1 || g.Instances[0] != (router.Instance{Name: "green-a", Addr: "[fd00::5]:8080", ScoringPath: "/predict"}) {
		t.Errorf("green: %+v", g.Instances)
	}
	tk := tab.Endpoints["tok"]
	if tk == nil || tk.AuthMode != "aml_token" || tk.TokenKey != "signing" {
		t.Errorf("endpoint tok: %+v", tk)
	}
}

func TestReadMode(t *testing.T) {
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "azureml", Name: "azureml-fe-config"}, Data: data}
	}
	if m, err := readMode(cm(map[string]string{"https": "false"})); err != nil || m.https {
		t.Errorf("https=false: %+v %v", m, err)
	}
	if m, err := readMode(cm(map[string]string{"https": "true", "tlsSecret": "fe-tls"})); err != nil || !m.https || m.tlsSecret != "fe-tls" {
		t.Errorf("https=true: %+v %v", m, err)
	}
	for _, bad := range []map[string]string{{}, {"https": "yes please"}, {"https": "true"}} {
		if _, err := readMode(cm(bad)); err == nil {
			t.Errorf("%v taken", bad)
		}
	}
}
