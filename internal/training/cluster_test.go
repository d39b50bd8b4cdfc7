package training

// Tests against the local Outpost cluster: the CRDs as the extension
// renders them, the operator running in-process, pods that really run.
// `go test -short` leaves them out (and starts no cluster).

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/wrapper"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	clustertest.Main(m)
}

var (
	setupOnce sync.Once
	setupErr  error
	kube      client.Client
	opLog     clustertest.Log
	jobAPI    *jobServer
	nsCount   int
)

// cluster installs the CRDs, starts the operator and the fake job-run API
// once for the package, and returns a client.
func cluster(t *testing.T) client.Client {
	t.Helper()
	if clustertest.Cluster == nil {
		t.Skip("no test cluster (-short)")
	}
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator log:\n%s", opLog.String())
		}
	})
	return kube
}

func setup() error {
	s, err := Scheme()
	if err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return err
	}
	kube, err = client.New(clustertest.Cluster.REST, client.Options{Scheme: s})
	if err != nil {
		return err
	}
	ctx := context.Background()
	objs, err := extension.Render(extension.Settings{EnableTraining: true}, extension.RenderOptions{Name: "ml", Image: "outpost:test"})
	if err != nil {
		return err
	}
	err = clustertest.InstallRendered(ctx, objs, func(kind, name string) bool {
		return kind == "Namespace" || kind == "ServiceAccount" && name == "training-operator" ||
			strings.HasPrefix(kind, "ClusterRole") && name == "ml-training-operator"
	})
	if err != nil {
		return err
	}
	if jobAPI, err = startJobServer(); err != nil {
		return err
	}

	// The install containers run the cluster's outpost binary, not this
	// test's.
	key, err := wrapper.KeyOf(clustertest.Cluster.Outpost)
	if err != nil {
		return err
	}
	probe := freeAddr()
	go func() {
		cfg := rest.CopyConfig(clustertest.Cluster.REST)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + extension.Namespace + ":training-operator"}
		err := Run(ctx, cfg, Options{
			Image: "outpost:test", WrapperKey: key, ProbeAddr: probe,
			Logger: slog.New(slog.NewTextHandler(&opLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		fmt.Fprintf(&opLog, "operator ended: %v\n", err)
	}()
	// The probe answers once the caches are filled: then jobs are admitted.
	if err := clustertest.WaitHealthz(ctx, probe, &opLog); err != nil {
		return fmt.Errorf("the operator: %w", err)
	}
	return nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// jobServer stands in for the workspace's job-run API that the job's
// wrapper calls: under /hang/ it never answers (the job runs until it is
// canceled), under /refuse/ it refuses the credential (the job fails at
// once, with the wrapper's message).
type jobServer struct {
	url   string
	caPEM []byte
	done  chan struct{}
}

func startJobServer() (*jobServer, error) {
	cert, caPEM, _, err := clustertest.SelfSigned("job api test", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	s := &jobServer{caPEM: caPEM, done: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/hang/"):
				select {
				case <-r.Context().Done():
				case <-s.done:
				}
			default:
				http.Error(w, "credential refused by the test", http.StatusForbidden)
			}
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	go srv.ServeTLS(l, "", "")
	s.url = "https://" + l.Addr().String()
	return s, nil
}

func namespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := "tj-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	nsCount++ // -count=N runs a test again on the same cluster
	ns = fmt.Sprintf("%s-%d", ns, nsCount)
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// submit creates a job's Secret and TrainingJob as the agent does; mode is
// the fake job-run API's behaviour ("hang" or "refuse").
func submit(t *testing.T, c client.Client, ns, name, instanceType, mode string, mod ...func(*v1alpha1.TrainingJob)) {
	t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-credentials"},
		StringData: map[string]string{
			v1alpha1.EnvJobURL: jobAPI.url + "/" + mode, v1alpha1.EnvJobToken: "test-token", v1alpha1.EnvJobCA: string(jobAPI.caPEM),
		},
	}
	if err := c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	job := &v1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.TrainingJobSpec{
			JobID: "/jobs/" + name, Image: "python:3.12", InstanceType: instanceType, InstanceCount: 1, SecretName: sec.Name,
		},
	}
	for _, m := range mod {
		m(job)
	}
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
}

func waitJob(t *testing.T, c client.Client, ns, name string, timeout time.Duration, ok func(*v1alpha1.TrainingJob) error) *v1alpha1.TrainingJob {
	t.Helper()
	var job v1alpha1.TrainingJob
	clustertest.Eventually(t, timeout, "job "+name, func() error {
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &job); err != nil {
			return err
		}
		if err := ok(&job); err != nil {
			return fmt.Errorf("%w (status %s %q %q)", err, job.Status.Phase, job.Status.Reason, job.Status.Message)
		}
		return nil
	})
	return &job
}

func inPhase(phase, reason string) func(*v1alpha1.TrainingJob) error {
	return func(j *v1alpha1.TrainingJob) error {
		if j.Status.Phase != phase || j.Status.Reason != reason {
			return fmt.Errorf("want %s %q", phase, reason)
		}
		return nil
	}
}

func createInstanceType(t *testing.T, c client.Client, name string, req, lim corev1.ResourceList) {
	t.Helper()
	it := &amlarcv1alpha1.InstanceType{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: amlarcv1alpha1.InstanceTypeSpec{Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}
	if err := c.Create(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), it) })
}

func TestClusterRefusals(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	createInstanceType(t, c, "enormous", res("1000", "1Gi"), res("1000", "1Gi"))

	submit(t, c, ns, "unknown", "no-such-type", "refuse")
	j := waitJob(t, c, ns, "unknown", 30*time.Second, inPhase(api.ClusterJobFailed, ReasonInstanceTypeNotFound))
	if !strings.Contains(j.Status.Message, `instance type "no-such-type" not found`) || !strings.Contains(j.Status.Message, "defaultinstancetype") ||
		!strings.Contains(j.Status.Message, "enormous") {
		t.Errorf("message %q does not list the known instance types", j.Status.Message)
	}

	submit(t, c, ns, "never", "enormous", "refuse")
	j = waitJob(t, c, ns, "never", 30*time.Second, inPhase(api.ClusterJobFailed, ReasonUnschedulable))
	if !strings.Contains(j.Status.Message, "needs 1 x (1000 CPU, 1Gi)") || !strings.Contains(j.Status.Message, clustertest.Cluster.Config.NodeName) {
		t.Errorf("message %q lacks the numbers", j.Status.Message)
	}
}

// freeCPU is the node's allocatable CPU less what its pods request.
func freeCPU(t *testing.T, c client.Client) (string, resource.Quantity) {
	t.Helper()
	ctx := context.Background()
	var n corev1.Node
	if err := c.Get(ctx, types.NamespacedName{Name: clustertest.Cluster.Config.NodeName}, &n); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		t.Fatal(err)
	}
	nodes := snapshot([]corev1.Node{n}, pods.Items, nil)
	return n.Name, nodes[0].free[corev1.ResourceCPU]
}

// A job that needs the whole free CPU of the node waits while another pod
// holds some, is admitted the moment that pod ends, and fails with the
// wrapper's own message when the job-run API refuses it: the init container
// installed the real wrapper, which ran in the job container.
func TestClusterQueuedAdmittedFailed(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c)
	node, free := freeCPU(t, c)
	if free.MilliValue() < 300 {
		t.Skipf("node %s has only %s CPU free", node, free.String())
	}
	createInstanceType(t, c, "whole-node", res(free.String(), "64Mi"), res(free.String(), "64Mi"))

	blocker := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "blocker"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "pause", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		}}},
	}
	if err := c.Create(ctx, blocker); err != nil {
		t.Fatal(err)
	}
	submit(t, c, ns, "big", "whole-node", "refuse")
	j := waitJob(t, c, ns, "big", 30*time.Second, inPhase(api.ClusterJobQueued, ReasonUnschedulable))
	want := fmt.Sprintf("waiting for available resources: needs 1 x (%s, 64Mi), free now: %s ", formatCPU(free), node)
	if !strings.HasPrefix(j.Status.Message, want) {
		t.Errorf("message %q, want it to start with %q", j.Status.Message, want)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelJob: "big"}); err != nil || len(pods.Items) != 0 {
		t.Fatalf("pods of a queued job: %d, %v", len(pods.Items), err)
	}

	start := time.Now()
	if err := c.Delete(ctx, blocker, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, c, ns, "big", 90*time.Second, func(j *v1alpha1.TrainingJob) error {
		if j.Status.Phase == api.ClusterJobQueued || j.Status.Phase == "" {
			return fmt.Errorf("not admitted")
		}
		return nil
	})
	t.Logf("admitted %s after the blocker's deletion", time.Since(start).Round(time.Millisecond))

	var pod corev1.Pod
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "big-0"}, &pod); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != node || pod.Labels[v1alpha1.LabelJob] != "big" || pod.Labels[v1alpha1.LabelInstance] != "0" ||
		metav1.GetControllerOf(&pod) == nil || metav1.GetControllerOf(&pod).UID != j.UID {
		t.Errorf("pod %s: node %q labels %v owner %v", pod.Name, pod.Spec.NodeName, pod.Labels, pod.OwnerReferences)
	}
	if q := pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; q.Cmp(free) != 0 {
		t.Errorf("job container requests %s CPU, the instance type %s", q.String(), free.String())
	}

	j = waitJob(t, c, ns, "big", 90*time.Second, inPhase(api.ClusterJobFailed, ReasonError))
	if !strings.Contains(j.Status.Message, "403") || !strings.Contains(j.Status.Message, "credential refused by the test") {
		t.Errorf("message %q is not the wrapper's account of the refusal", j.Status.Message)
	}
	if len(j.Status.Instances) != 1 || j.Status.Instances[0].Phase != string(corev1.PodFailed) || j.Status.Instances[0].ExitCode == nil ||
		*j.Status.Instances[0].ExitCode == 0 || j.Status.Instances[0].Node != node {
		t.Errorf("instances = %+v", j.Status.Instances)
	}
	if j.Status.CompletionTime == nil || j.Status.ObservedGeneration != j.Generation {
		t.Errorf("completionTime %v observedGeneration %d/%d", j.Status.CompletionTime, j.Status.ObservedGeneration, j.Generation)
	}
}

// A running job canceled ends within seconds: its pods are deleted, and it
// is Canceled once they are gone.
func TestClusterCancel(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c)
	createInstanceType(t, c, "tiny", res("100m", "64Mi"), res("1", "256Mi"))

	submit(t, c, ns, "long", "tiny", "hang")
	j := waitJob(t, c, ns, "long", 90*time.Second, inPhase(api.ClusterJobRunning, ""))
	if j.Status.StartTime == nil {
		t.Error("running without a startTime")
	}

	start := time.Now()
	j.Spec.Cancel = true
	if err := c.Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, c, ns, "long", 30*time.Second, inPhase(api.ClusterJobCanceled, ReasonCanceled))
	took := time.Since(start)
	t.Logf("canceled in %s", took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("cancel took %s", took)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods after cancel: %d, %v", len(pods.Items), err)
	}

	// A job canceled before it was admitted ends at once.
	j2 := &v1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "never-started"},
		Spec:       v1alpha1.TrainingJobSpec{JobID: "x", Image: "python", InstanceCount: 1, SecretName: "none", Cancel: true},
	}
	if err := c.Create(ctx, j2); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, ns, "never-started", 30*time.Second, inPhase(api.ClusterJobCanceled, ReasonCanceled))
}

// The InstanceType CRD takes Azure ML's manifests unchanged, kubectl
// applies an InstanceTypeList as its items, and the schema refuses what
// Azure ML refuses.
func TestClusterInstanceTypeSchema(t *testing.T) {
	cluster(t)
	kubectl := func(stdin string, args ...string) (string, string, int) {
		return clustertest.RunWithInput(t, strings.NewReader(stdin), nil, "kubectl", append([]string{"--kubeconfig", clustertest.Cluster.Kubeconfig}, args...)...)
	}
	manifest := `apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata:
  name: myinstancetypename
spec:
  nodeSelector:
    mylabel: mylabelvalue
  resources:
    limits:
      cpu: "1"
      nvidia.com/gpu: 1
      memory: "2Gi"
    requests:
      cpu: "700m"
      memory: "1500Mi"
---
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceTypeList
items:
  - metadata:
      name: cpusmall
    spec:
      resources:
        requests: {cpu: "100m", memory: "100Mi"}
        limits: {cpu: "1", nvidia.com/gpu: 0, memory: "1Gi"}
`
	out, errOut, code := kubectl(manifest, "apply", "-f", "-")
	if code != 0 {
		t.Fatalf("kubectl apply: %s%s", out, errOut)
	}
	t.Cleanup(func() { kubectl("", "delete", "instancetype", "myinstancetypename", "cpusmall", "--ignore-not-found") })
	for _, want := range []string{"instancetype.amlarc.azureml.com/myinstancetypename created", "instancetype.amlarc.azureml.com/cpusmall created"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply said %q, want %q", out, want)
		}
	}
	out, _, _ = kubectl("", "get", "it", "myinstancetypename", "cpusmall")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME NODE SELECTOR CPU GPU MEMORY AGE" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), `myinstancetypename {"mylabel":"mylabelvalue"} 1 1 2Gi`) ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[2]), " "), "cpusmall 1 0 1Gi") {
		t.Errorf("kubectl get it:\n%s", out)
	}
	// Applying again changes nothing.
	if out, errOut, code := kubectl(manifest, "apply", "-f", "-"); code != 0 || strings.Count(out, "unchanged") != 2 {
		t.Errorf("second apply: %s%s", out, errOut)
	}

	bad := func(resources string) string {
		return "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata: {name: bad}\nspec:\n  resources: " + resources + "\n"
	}
	for _, c := range []struct {
		name, manifest, want string
	}{
		{"GPU under requests", bad(`{requests: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1}, limits: {cpu: 1, memory: 1Gi}}`), "may name only 'cpu', 'memory'"},
		{"fractional GPU", bad(`{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi, nvidia.com/gpu: "0.5"}}`), "nvidia.com/gpu must be a whole number"},
		{"GPU as a quantity", bad(`{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1k}}`), "nvidia.com/gpu must be a whole number"},
		{"unknown resource", bad(`{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi, ephemeral-storage: 1Gi}}`), "may name only"},
		{"no memory limit", bad(`{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1}}`), "memory"},
		{"no requests", bad(`{limits: {cpu: 1, memory: 1Gi}}`), "requests"},
		{"garbage quantity", bad(`{requests: {cpu: lots, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}`), "spec.resources.requests.cpu"},
		{"negative", bad(`{requests: {cpu: -1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}`), "spec.resources.requests.cpu"},
		{"zero CPU", bad(`{requests: {cpu: "0", memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}`), "cpu must be above 0"},
		{"requests above limits", bad(`{requests: {cpu: 2, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}`), "requests.cpu must not be above limits.cpu"},
		{"memory requests above limits", bad(`{requests: {cpu: 1, memory: 2Gi}, limits: {cpu: 1, memory: 1500Mi}}`), "requests.memory must not be above limits.memory"},
		{"node selector not strings", "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata: {name: bad}\nspec:\n  nodeSelector: {a: {b: c}}\n  resources: {requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}\n", "nodeSelector"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// --validate=false: the API server's own schema refuses it, not
			// kubectl's field checks, so any client is refused alike.
			out, errOut, code := kubectl(c.manifest, "create", "--dry-run=server", "--validate=false", "-f", "-")
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("kubectl create: exit %d\n%s%s\nwant a refusal naming %q", code, out, errOut, c.want)
			}
		})
	}
	// Valid shapes beyond the example: integers, decimal exponents, no GPU.
	ok := bad(`{requests: {cpu: 1, memory: 1e9}, limits: {cpu: 2, memory: 1Gi, nvidia.com/gpu: "2"}}`)
	if out, errOut, code := kubectl(ok, "create", "--dry-run=server", "-f", "-"); code != 0 {
		t.Errorf("valid instance type refused: %s%s", out, errOut)
	}
}

// The TrainingJob CRD serves its printer columns and its status subresource.
func TestClusterTrainingJobColumns(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	submit(t, c, ns, "shown", "no-such-type", "refuse")
	waitJob(t, c, ns, "shown", 30*time.Second, inPhase(api.ClusterJobFailed, ReasonInstanceTypeNotFound))
	out := clustertest.Kubectl(t, "-n", ns, "get", "tj")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME PHASE INSTANCES REASON AGE" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "shown Failed 1 InstanceTypeNotFound") {
		t.Errorf("kubectl get tj:\n%s", out)
	}
	// A spec update through the main resource leaves the status alone.
	var j v1alpha1.TrainingJob
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "shown"}, &j); err != nil {
		t.Fatal(err)
	}
	j.Status.Phase = "Running"
	if err := c.Update(context.Background(), &j); err != nil && !apierrors.IsConflict(err) {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "shown"}, &j); err != nil || j.Status.Phase != api.ClusterJobFailed {
		t.Errorf("status changed through the main resource: %s %v", j.Status.Phase, err)
	}
}

// limits.timeout ends a running job as Failed, DeadlineExceeded.
func TestClusterTimeout(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	createInstanceType(t, c, "tiny-timeout", res("100m", "64Mi"), res("1", "256Mi"))
	submit(t, c, ns, "slow", "tiny-timeout", "hang", func(j *v1alpha1.TrainingJob) { j.Spec.TimeoutSeconds = 2 })
	got := waitJob(t, c, ns, "slow", 60*time.Second, inPhase(api.ClusterJobFailed, ReasonDeadlineExceeded))
	if got.Status.Message != "timed out after limits.timeout=2 s" {
		t.Errorf("message = %q", got.Status.Message)
	}
}
