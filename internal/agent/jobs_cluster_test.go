package agent

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api"
	trainingv1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
)

// fakeWorkspace serves the agent protocol from objects a test sets: long
// polls answer what changed since the agent's revision (everything, as a
// reset, to an agent that starts), and reports are kept.
type fakeWorkspace struct {
	srv   *httptest.Server
	token string

	mu        sync.Mutex
	changed   chan struct{} // closed at every change of the state
	rev       int64
	objects   map[api.ObjectRef]api.DesiredObject
	at        map[api.ObjectRef]int64 // revision of an object's last change
	gone      map[api.ObjectRef]int64 // revision of its deletion
	resetNext bool
	reports   []receivedReport
	reported  chan struct{} // closed at every report
}

type receivedReport struct {
	at  time.Time
	rep api.AgentReport
}

const (
	fakeRG      = "rg"
	fakeCluster = "c1"
	// fakeHeartbeat is long, so that a report that comes soon after a
	// job's change was kicked by it.
	fakeHeartbeat = 60
)

func newFakeWorkspace(t *testing.T) *fakeWorkspace {
	w := &fakeWorkspace{token: "agent-token", changed: make(chan struct{}), reported: make(chan struct{}),
		objects: map[api.ObjectRef]api.DesiredObject{}, at: map[api.ObjectRef]int64{}, gone: map[api.ObjectRef]int64{}}
	base := "/agent/v1/resourceGroups/" + fakeRG + "/connectedClusters/" + fakeCluster
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/sync", w.sync)
	mux.HandleFunc("POST "+base+"/report", w.report)
	w.srv = httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+w.token {
			http.Error(rw, "bad token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *fakeWorkspace) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.Certificate().Raw})
}

func (w *fakeWorkspace) bump() {
	w.rev++
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *fakeWorkspace) put(o api.DesiredObject) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bump()
	w.objects[o.Ref()], w.at[o.Ref()] = o, w.rev
	delete(w.gone, o.Ref())
}

// remove deletes an object; with tombstone false the workspace forgets it
// as one older than the deletions it keeps: only a reset tells the agent.
func (w *fakeWorkspace) remove(ref api.ObjectRef, tombstone bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bump()
	delete(w.objects, ref)
	delete(w.at, ref)
	if tombstone {
		w.gone[ref] = w.rev
	} else {
		w.resetNext = true
	}
}

func (w *fakeWorkspace) revision() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rev
}

func (w *fakeWorkspace) sync(rw http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	wait := time.After(2 * time.Second)
	for {
		w.mu.Lock()
		resp := api.SyncResponse{Revision: w.rev, HeartbeatSeconds: fakeHeartbeat, Objects: []api.DesiredObject{}}
		switch {
		case since == 0 || w.resetNext:
			resp.Reset, w.resetNext = true, false
			for _, o := range w.objects {
				resp.Objects = append(resp.Objects, o)
			}
		case w.rev > since:
			for ref, o := range w.objects {
				if w.at[ref] > since {
					resp.Objects = append(resp.Objects, o)
				}
			}
			for ref, rev := range w.gone {
				if rev > since {
					resp.Deleted = append(resp.Deleted, ref)
				}
			}
		}
		ch, answer := w.changed, resp.Reset || w.rev > since
		w.mu.Unlock()
		if answer {
			writeJSON(rw, resp)
			return
		}
		select {
		case <-ch:
		case <-wait:
			resp.Revision = since
			writeJSON(rw, resp)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(rw).Encode(v); err != nil {
		panic(err) // a test server writing to a live connection
	}
}

func (w *fakeWorkspace) report(rw http.ResponseWriter, r *http.Request) {
	var rep api.AgentReport
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.reports = append(w.reports, receivedReport{at: time.Now(), rep: rep})
	close(w.reported)
	w.reported = make(chan struct{})
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// reportCount is where waitReport starts to look for reports to come.
func (w *fakeWorkspace) reportCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.reports)
}

// waitReport returns the first report from the from-th on that ok accepts.
func (w *fakeWorkspace) waitReport(t *testing.T, from int, timeout time.Duration, what string, ok func(api.AgentReport) error) receivedReport {
	t.Helper()
	deadline := time.After(timeout)
	var last error = errors.New("no report")
	for {
		w.mu.Lock()
		for ; from < len(w.reports); from++ {
			if last = ok(w.reports[from].rep); last == nil {
				r := w.reports[from]
				w.mu.Unlock()
				return r
			}
		}
		ch := w.reported
		w.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: no such report within %s; last: %v", what, timeout, last)
		}
	}
}

// startAgent runs an agent against w and the package's cluster until the
// returned stop is called (or the test ends): stop returns once every
// goroutine of the agent has, as a killed agent leaves nothing behind.
func startAgent(t *testing.T, w *fakeWorkspace) (stop func()) {
	cfg := Config{WorkspaceURL: w.srv.URL, ResourceGroup: fakeRG, Cluster: fakeCluster, Token: w.token, CAPEM: w.caPEM(),
		Proxy: "http://proxy.test:3128", NoProxy: "127.0.0.1", Kubeconfig: clustertest.Cluster.Kubeconfig}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	go func() { done <- Run(ctx, cfg, log) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// installCRD creates the CRD of a testdata file and waits until it serves.
func installCRD(t *testing.T, a *Agent, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	crd := obj(t, string(data))
	if err := a.applyObjects(context.Background(), []*unstructured.Unstructured{crd}); err != nil {
		t.Fatal(err)
	}
	crds := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	clustertest.Eventually(t, 30*time.Second, crd.GetName()+" established", func() error {
		live, err := crds.Get(context.Background(), crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v, msg := judge(live); v != ready {
			return errors.New(msg)
		}
		return nil
	})
}

func crdExists(t *testing.T, a *Agent, name string) bool {
	t.Helper()
	crds := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	_, err := crds.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func jobObject(name string, gen int64, cancel bool) api.DesiredObject {
	return api.DesiredObject{Kind: api.KindJob, ID: "/resourceGroups/rg/workspaces/ws/jobs/" + name, Generation: gen,
		Job: &api.DesiredJob{Name: name, ResourceGroup: "rg", Workspace: "ws", Compute: "k8s", Namespace: "jobs-test",
			Token: "token-of-" + name, Image: "python:3.12-slim", InstanceType: "defaultinstancetype", InstanceCount: 1,
			Distribution: &api.Distribution{Type: "pytorch", ProcessCountPerInstance: 1}, TimeoutSeconds: 300, Cancel: cancel}}
}

func jobsOf(rep api.AgentReport, id string) (api.JobReport, bool) {
	for _, j := range rep.Jobs {
		if j.ID == id {
			return j, true
		}
	}
	return api.JobReport{}, false
}

// TestJobsOnTheCluster drives a running agent through a job's life as the
// workspace would: before and after the TrainingJob CRD exists, status
// reports, cancel, a restart, deletion, and a reset that finds orphans.
func TestJobsOnTheCluster(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	const ns = "jobs-test"
	tjs := a.dyn.Resource(trainingJobs)
	getTJ := func(name string) (*unstructured.Unstructured, error) {
		return tjs.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	}
	ws := newFakeWorkspace(t)
	ws.put(api.DesiredObject{Kind: api.KindCompute, ID: "/resourceGroups/rg/workspaces/ws/computes/k8s", Generation: 1,
		Compute: &api.DesiredCompute{Name: "k8s", Namespace: ns, CreateNamespace: true}})
	stop := startAgent(t, ws)

	crdWasThere := crdExists(t, a, "trainingjobs.training.outpost.dev")
	first := ws.waitReport(t, 0, 30*time.Second, "first report", func(r api.AgentReport) error {
		if len(r.Facts.Nodes) == 0 || r.Facts.Nodes[0].Allocatable["cpu"] == "" {
			return fmt.Errorf("nodes %+v", r.Facts.Nodes)
		}
		return nil
	})
	if !crdExists(t, a, "instancetypes.amlarc.azureml.com") {
		if its := first.rep.Facts.InstanceTypes; len(its) != 1 || its[0].Name != api.DefaultInstanceType || !its[0].BuiltIn {
			t.Errorf("instance types before the CRD: %+v, want the built-in one only", its)
		}
	}

	// A job that comes before the extension installed the CRD waits for it.
	job := jobObject("Hello_World.1", 1, false)
	cr := crName(job.Job.Name)
	ws.put(job)
	if !crdWasThere {
		clustertest.Eventually(t, 30*time.Second, "the job's Secret, made before its TrainingJob", func() error {
			_, err := a.kube.CoreV1().Secrets(ns).Get(ctx, cr+"-credentials", metav1.GetOptions{})
			return err
		})
		if _, err := getTJ(cr); err == nil {
			t.Fatal("a TrainingJob before its CRD")
		}
		installCRD(t, a, "testdata/trainingjobs-crd.yaml")
	}
	var tj *unstructured.Unstructured
	clustertest.Eventually(t, 60*time.Second, "TrainingJob "+cr+" (the failed apply retried)", func() (err error) {
		tj, err = getTJ(cr)
		return err
	})
	want := buildTrainingJob(job.ID, job.Job)
	var spec trainingv1.TrainingJobSpec
	if err := json.Unmarshal(mustJSON(t, tj.Object["spec"]), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Distribution == nil || *spec.Distribution != *want.Spec.Distribution {
		t.Errorf("distribution %+v, want %+v", spec.Distribution, want.Spec.Distribution)
	}
	spec.Distribution, want.Spec.Distribution = nil, nil
	if spec != want.Spec {
		t.Errorf("spec %+v, want %+v", spec, want.Spec)
	}
	if tj.GetLabels()["app.kubernetes.io/managed-by"] != "outpost-agent" || tj.GetLabels()[trainingv1.LabelJob] != cr ||
		tj.GetAnnotations()[trainingv1.AnnotationJobName] != "Hello_World.1" {
		t.Errorf("TrainingJob labels %v annotations %v", tj.GetLabels(), tj.GetAnnotations())
	}
	clustertest.Eventually(t, 30*time.Second, "the Secret owned by the TrainingJob", func() error {
		s, err := a.kube.CoreV1().Secrets(ns).Get(ctx, cr+"-credentials", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != tj.GetUID() || s.OwnerReferences[0].Kind != "TrainingJob" {
			return fmt.Errorf("owners %+v", s.OwnerReferences)
		}
		wantURL := ws.srv.URL + "/jobrun/v1/resourceGroups/rg/workspaces/ws/jobs/Hello_World.1"
		if string(s.Data[trainingv1.EnvJobURL]) != wantURL || string(s.Data[trainingv1.EnvJobToken]) != "token-of-Hello_World.1" ||
			string(s.Data[trainingv1.EnvJobCA]) != string(ws.caPEM()) || string(s.Data[trainingv1.EnvProxy]) != "http://proxy.test:3128" ||
			string(s.Data[trainingv1.EnvNoProxy]) != "127.0.0.1" {
			return fmt.Errorf("data not as wanted (keys %v)", slices.Sorted(maps.Keys(s.Data)))
		}
		if s.Labels[trainingv1.LabelJob] != cr || s.Annotations[trainingv1.AnnotationJobName] != "Hello_World.1" {
			return fmt.Errorf("labels %v annotations %v", s.Labels, s.Annotations)
		}
		return nil
	})

	// The operator's status reaches the workspace at once: the heartbeat is
	// a minute.
	setStatus := func(status string) time.Time {
		t.Helper()
		live, err := getTJ(cr)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := yaml.Unmarshal([]byte(status), &st); err != nil {
			t.Fatal(err)
		}
		live.Object["status"] = st
		if _, err := tjs.Namespace(ns).UpdateStatus(ctx, live, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	from := ws.reportCount()
	changedAt := setStatus(`{phase: Running, startTime: "2026-03-01T10:00:00Z"}`)
	got := ws.waitReport(t, from, 10*time.Second, "the report of Running", func(r api.AgentReport) error {
		if j, ok := jobsOf(r, job.ID); !ok || j.Phase != "Running" || j.StartTime == nil || !j.StartTime.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
			return fmt.Errorf("jobs %+v", r.Jobs)
		}
		return nil
	})
	t.Logf("status change to report: %s", got.at.Sub(changedAt).Round(time.Millisecond))
	if d := got.at.Sub(changedAt); d > 5*time.Second {
		t.Errorf("the status change took %s to be reported", d)
	}
	from = ws.reportCount()
	setStatus(`{phase: Failed, reason: Error, message: "exit code 3: boom", startTime: "2026-03-01T10:00:00Z", completionTime: "2026-03-01T10:01:00Z"}`)
	ws.waitReport(t, from, 10*time.Second, "the report of Failed", func(r api.AgentReport) error {
		if j, ok := jobsOf(r, job.ID); !ok || j.Phase != "Failed" || j.Reason != "Error" || j.Message != "exit code 3: boom" || j.EndTime == nil {
			return fmt.Errorf("jobs %+v", r.Jobs)
		}
		return nil
	})

	// Cancel changes spec.cancel only; the next report (after that apply)
	// does not repeat a state the workspace has.
	from = ws.reportCount()
	ws.put(jobObject("Hello_World.1", 2, true))
	clustertest.Eventually(t, 30*time.Second, "spec.cancel set", func() error {
		live, err := getTJ(cr)
		if err != nil {
			return err
		}
		if c, _, _ := unstructured.NestedBool(live.Object, "spec", "cancel"); !c {
			return errors.New("not cancelled")
		}
		if live.GetUID() != tj.GetUID() {
			return errors.New("TrainingJob made again")
		}
		if phase, _, _ := unstructured.NestedString(live.Object, "status", "phase"); phase != "Failed" {
			return fmt.Errorf("status phase %q: the operator's status was overwritten", phase)
		}
		return nil
	})
	rev := ws.revision()
	ws.waitReport(t, from, 30*time.Second, "the report after the cancel", func(r api.AgentReport) error {
		if r.Revision < rev {
			return fmt.Errorf("revision %d", r.Revision)
		}
		if len(r.Jobs) != 0 {
			t.Errorf("a report repeats unchanged jobs: %+v", r.Jobs)
		}
		return nil
	})

	// An agent killed and started again applies the same: nothing is
	// written, and its first report carries every job.
	stop()
	before, err := getTJ(cr)
	if err != nil {
		t.Fatal(err)
	}
	secretBefore, err := a.kube.CoreV1().Secrets(ns).Get(ctx, cr+"-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	from = ws.reportCount()
	stop = startAgent(t, ws)
	ws.waitReport(t, from, 30*time.Second, "the restarted agent's report of every job", func(r api.AgentReport) error {
		if j, ok := jobsOf(r, job.ID); !ok || j.Phase != "Failed" {
			return fmt.Errorf("jobs %+v", r.Jobs)
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
	after, err := getTJ(cr)
	if err != nil {
		t.Fatal(err)
	}
	secretAfter, err := a.kube.CoreV1().Secrets(ns).Get(ctx, cr+"-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.GetUID() != before.GetUID() || after.GetResourceVersion() != before.GetResourceVersion() ||
		secretAfter.ResourceVersion != secretBefore.ResourceVersion {
		t.Errorf("the restarted agent wrote: TrainingJob %s@%s -> %s@%s, Secret @%s -> @%s", before.GetUID(), before.GetResourceVersion(),
			after.GetUID(), after.GetResourceVersion(), secretBefore.ResourceVersion, secretAfter.ResourceVersion)
	}

	// A deleted job loses its TrainingJob and Secret, and is no longer reported.
	ws.remove(job.Ref(), true)
	gone := func(what string, get func() error) {
		t.Helper()
		clustertest.Eventually(t, 30*time.Second, what+" deleted", func() error {
			if err := get(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
	}
	gone("TrainingJob", func() error { _, err := getTJ(cr); return err })
	gone("Secret", func() error {
		_, err := a.kube.CoreV1().Secrets(ns).Get(ctx, cr+"-credentials", metav1.GetOptions{})
		return err
	})

	// After a reset, what the agent made for jobs the workspace no longer
	// has goes; a TrainingJob the agent did not make stays.
	orphan := jobObject("orphan", 1, false)
	ws.put(orphan)
	clustertest.Eventually(t, 30*time.Second, "TrainingJob orphan", func() error { _, err := getTJ("orphan"); return err })
	foreign := obj(t, `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: users-own, namespace: jobs-test},
		spec: {jobId: /elsewhere, image: x, instanceCount: 1, secretName: none}}`)
	stray := obj(t, `{apiVersion: training.outpost.dev/v1alpha1, kind: TrainingJob, metadata: {name: stray, namespace: jobs-test,
		labels: {app.kubernetes.io/managed-by: outpost-agent, training.outpost.dev/job: stray}},
		spec: {jobId: /resourceGroups/rg/workspaces/ws/jobs/stray, image: x, instanceCount: 1, secretName: stray-credentials}}`)
	for _, o := range []*unstructured.Unstructured{foreign, stray} {
		if _, err := tjs.Namespace(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	strayCreds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "stray-credentials", Namespace: ns,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "outpost-agent", trainingv1.LabelJob: "stray"}}}
	if _, err := a.kube.CoreV1().Secrets(ns).Create(ctx, strayCreds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ws.remove(orphan.Ref(), false)
	gone("orphan TrainingJob", func() error { _, err := getTJ("orphan"); return err })
	gone("stray TrainingJob", func() error { _, err := getTJ("stray"); return err })
	gone("stray Secret", func() error {
		_, err := a.kube.CoreV1().Secrets(ns).Get(ctx, "stray-credentials", metav1.GetOptions{})
		return err
	})
	if _, err := getTJ("users-own"); err != nil {
		t.Errorf("a TrainingJob the agent did not make: %v", err)
	}
	stop()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFactsCarryInstanceTypes reads the instance types of the cluster as
// the reports carry them: the built-in one until an object replaces it.
func TestFactsCarryInstanceTypes(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	installCRD(t, a, "testdata/instancetypes-crd.yaml")
	its := a.dyn.Resource(instanceTypesGVR)
	gpu := obj(t, `{apiVersion: amlarc.azureml.com/v1alpha1, kind: InstanceType, metadata: {name: facts-gpu},
		spec: {nodeSelector: {accelerator: t4}, resources: {requests: {cpu: "1", memory: 4Gi}, limits: {cpu: 2, memory: 8Gi, nvidia.com/gpu: 1}}}}`)
	if _, err := its.Create(ctx, gpu, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteInstanceType(t, "facts-gpu") })
	f := a.facts(ctx)
	var names []string
	for _, it := range f.InstanceTypes {
		names = append(names, it.Name)
		if it.Name == "facts-gpu" && (it.Resources.Limits["nvidia.com/gpu"] != "1" || it.Resources.Requests["memory"] != "4Gi" ||
			it.Resources.Limits["cpu"] != "2" || it.NodeSelector["accelerator"] != "t4") {
			t.Errorf("facts-gpu: %+v", it)
		}
		if it.Name == api.DefaultInstanceType && !it.BuiltIn {
			t.Errorf("defaultinstancetype not built in: %+v", it)
		}
	}
	if fmt.Sprint(names) != "[defaultinstancetype facts-gpu]" {
		t.Errorf("instance types %v", names)
	}
	if len(f.Nodes) == 0 || !f.Nodes[0].Ready || f.AllocatableCPU == "" {
		t.Errorf("nodes %+v, totals %q", f.Nodes, f.AllocatableCPU)
	}

	def := obj(t, `{apiVersion: amlarc.azureml.com/v1alpha1, kind: InstanceType, metadata: {name: defaultinstancetype},
		spec: {resources: {requests: {cpu: 200m, memory: 1Gi}, limits: {cpu: "1", memory: 1Gi}}}}`)
	if _, err := its.Create(ctx, def, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteInstanceType(t, "defaultinstancetype") })
	f = a.facts(ctx)
	if len(f.InstanceTypes) != 2 || f.InstanceTypes[0].Name != api.DefaultInstanceType || f.InstanceTypes[0].BuiltIn ||
		f.InstanceTypes[0].Resources.Requests["cpu"] != "200m" {
		t.Errorf("an object named defaultinstancetype: %+v", f.InstanceTypes)
	}
}

func deleteInstanceType(t *testing.T, name string) {
	a := testAgent(t)
	err := a.dyn.Resource(instanceTypesGVR).Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete InstanceType %s: %v", name, err)
	}
}

// TestPruneKeepsObjectsMarkedKeep: turning a feature off or removing the
// extension leaves objects annotated on-remove: keep, such as the CRDs whose
// deletion would take users' objects along.
func TestPruneKeepsObjectsMarkedKeep(t *testing.T) {
	a := testAgent(t)
	ctx := context.Background()
	ensureNamespace(t, a, "keep-test")
	kept := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: kept, namespace: keep-test,
		labels: {outpost.dev/extension: keepext}, annotations: {outpost.dev/on-remove: keep}}}`)
	dropped := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: dropped, namespace: keep-test,
		labels: {outpost.dev/extension: keepext}}}`)
	syncExtension(t, a, "keepext", kept, dropped)
	other := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: other, namespace: keep-test, labels: {outpost.dev/extension: keepext}}}`)

	// The render no longer has them (training turned off).
	syncExtension(t, a, "keepext", other)
	if gone(t, a, kept) {
		t.Error("an object marked keep was pruned when the render dropped it")
	}
	if !gone(t, a, dropped) {
		t.Error("an object not marked keep was left")
	}
	// The extension is removed.
	if err := a.prune(ctx, "keepext", nil); err != nil {
		t.Fatal(err)
	}
	if gone(t, a, kept) {
		t.Error("an object marked keep was pruned with its extension")
	}
	if !gone(t, a, other) {
		t.Error("the removed extension's other object was left")
	}
	if got, err := a.installedExtensions(ctx); err != nil || len(got) != 0 {
		t.Errorf("installed extensions after the removal: %q (%v)", got, err)
	}
}
