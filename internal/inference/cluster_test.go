package inference

// Tests against the local Outpost cluster: the CRDs as the extension
// renders them, the operator running in-process under its rendered RBAC,
// pods that really run (Outpost's scoring server on a real score.py, and a
// custom container), the real scheduler's refusals. `go test -short`
// leaves them out (and starts no cluster).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"outpost.dev/outpost/api"
	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/inference/v1alpha1"
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
	runAPI    *deployRunServer
	nsCount   int
)

// cluster installs the CRDs, starts the operator and the fake
// deployment-run API once for the package, and returns a client.
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
	objs, err := extension.Render(extension.Settings{EnableInference: true, AllowInsecureConnections: true},
		extension.RenderOptions{Name: "ml", Image: "outpost:test", NodeCount: 1})
	if err != nil {
		return err
	}
	err = clustertest.InstallRendered(ctx, objs, func(kind, name string) bool {
		return kind == "Namespace" || kind == "ServiceAccount" && name == "inference-operator" ||
			strings.HasPrefix(kind, "ClusterRole") && name == "ml-inference-operator"
	})
	if err != nil {
		return err
	}
	if runAPI, err = startDeployRunServer(); err != nil {
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
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + extension.Namespace + ":inference-operator"}
		err := Run(ctx, cfg, Options{
			Image: "outpost:test", WrapperKey: key, RouterNamespace: extension.Namespace, ProbeAddr: probe,
			Logger: slog.New(slog.NewTextHandler(&opLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		fmt.Fprintf(&opLog, "operator ended: %v\n", err)
	}()
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

// deployRunServer stands in for the workspace's deployment-run API, which
// the pods call with the deployment's credential: the spec of each
// deployment, the files of one datastore, and the logs shipped to it.
type deployRunServer struct {
	url   string
	caPEM []byte

	mu    sync.Mutex
	runs  map[string]api.DeploymentRun // "<endpoint>/<deployment>"
	files map[string][]byte            // path in the datastore
	logs  map[string][]byte            // instance
}

const runToken = "deployment-test-token"

func startDeployRunServer() (*deployRunServer, error) {
	cert, caPEM, _, err := clustertest.SelfSigned("deployment-run api test", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	s := &deployRunServer{caPEM: caPEM,
		runs: map[string]api.DeploymentRun{}, files: map[string][]byte{}, logs: map[string][]byte{}}
	const base = "/deployrun/v1/resourceGroups/rg/workspaces/ws/onlineEndpoints/{e}/deployments/{d}"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/spec", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		run, ok := s.runs[r.PathValue("e")+"/"+r.PathValue("d")]
		s.mu.Unlock()
		if !ok {
			http.Error(w, `{"code":"NotFound","message":"no such deployment"}`, http.StatusNotFound)
			return
		}
		writeJSON(w, run)
	})
	mux.HandleFunc("GET "+base+"/datastores/workspaceblobstore/files", func(w http.ResponseWriter, r *http.Request) {
		prefix := r.URL.Query().Get("prefix")
		s.mu.Lock()
		defer s.mu.Unlock()
		out := []api.FileInfo{}
		for p, data := range s.files {
			if p == prefix || strings.HasPrefix(p, strings.TrimSuffix(prefix, "/")+"/") {
				sum := sha256.Sum256(data)
				out = append(out, api.FileInfo{Path: p, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Mode: 0o644})
			}
		}
		slices.SortFunc(out, func(a, b api.FileInfo) int { return strings.Compare(a.Path, b.Path) })
		writeJSON(w, out)
	})
	mux.HandleFunc("GET "+base+"/datastores/workspaceblobstore/files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		data, ok := s.files[r.PathValue("path")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(data)
		w.Header().Set("X-Content-SHA256", hex.EncodeToString(sum[:]))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	mux.HandleFunc("POST "+base+"/logs/{instance}", func(w http.ResponseWriter, r *http.Request) {
		off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
		body, rerr := io.ReadAll(r.Body)
		if err != nil || rerr != nil {
			http.Error(w, "bad offset or body", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// The workspace's rule: an append at the log's size; below it, a
		// retry of bytes it holds; past it, 409 with the size.
		log := s.logs[r.PathValue("instance")]
		size := int64(len(log))
		switch {
		case off == size:
			s.logs[r.PathValue("instance")] = append(log, body...)
		case off < size && off+int64(len(body)) <= size:
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"code":"Conflict","message":"the log is %d bytes long","size":%d}`, len(log), len(log))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+runToken {
				http.Error(w, `{"code":"Unauthorized","message":"bad token"}`, http.StatusUnauthorized)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	go srv.ServeTLS(l, "", "")
	s.url = "https://" + l.Addr().String()
	return s, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *deployRunServer) put(endpoint, deployment string, run api.DeploymentRun, files map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[endpoint+"/"+deployment] = run
	for p, data := range files {
		s.files[p] = []byte(data)
	}
}

func (s *deployRunServer) log(instance string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.logs[instance])
}

func namespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := "od-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
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

func createInstanceType(t *testing.T, c client.Client, name string, req, lim corev1.ResourceList) {
	t.Helper()
	it := &amlarcv1alpha1.InstanceType{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: amlarcv1alpha1.InstanceTypeSpec{Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}
	if err := c.Create(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), it) })
}

// deploy creates a deployment's credentials Secret and OnlineDeployment as
// the agent does.
func deploy(t *testing.T, c client.Client, ns, endpoint, name, instanceType string, mod ...func(*v1alpha1.OnlineDeployment)) *v1alpha1.OnlineDeployment {
	t.Helper()
	ctx := context.Background()
	cr := DeploymentName(endpoint, name)
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cr + "-credentials"},
		StringData: map[string]string{
			v1alpha1.EnvDeploymentURL:   runAPI.url + "/deployrun/v1/resourceGroups/rg/workspaces/ws/onlineEndpoints/" + endpoint + "/deployments/" + name,
			v1alpha1.EnvDeploymentToken: runToken,
			v1alpha1.EnvDeploymentCA:    string(runAPI.caPEM),
		},
	}
	if err := c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	probe := v1alpha1.Probe{PeriodSeconds: 1, InitialDelaySeconds: 0, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 60}
	od := &v1alpha1.OnlineDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cr},
		Spec: v1alpha1.OnlineDeploymentSpec{
			DeploymentID: "/resourceGroups/rg/workspaces/ws/onlineEndpoints/" + endpoint + "/deployments/" + name,
			Name:         name, Endpoint: endpoint, Image: "python:3.12", InstanceType: instanceType,
			Scale:      v1alpha1.Scale{Type: api.ScaleDefault, InstanceCount: 1},
			Request:    v1alpha1.Request{TimeoutMS: 5000, MaxConcurrentPerInstance: 1, MaxQueueWaitMS: 500},
			Liveness:   probe,
			Readiness:  probe,
			SecretName: sec.Name,
		},
	}
	for _, m := range mod {
		m(od)
	}
	if err := c.Create(ctx, od); err != nil {
		t.Fatal(err)
	}
	return od
}

// custom makes a deployment a custom container: the httpd image, which
// serves on port 80 as its image says.
func custom(od *v1alpha1.OnlineDeployment) {
	od.Spec.Image = "httpd:2.4"
	r := v1alpha1.Route{Port: 80, Path: "/"}
	od.Spec.InferenceConfig = &v1alpha1.InferenceConfig{Liveness: r, Readiness: r, Scoring: r}
}

func waitDeployment(t *testing.T, c client.Client, ns, name string, timeout time.Duration, ok func(*v1alpha1.OnlineDeployment) error) *v1alpha1.OnlineDeployment {
	t.Helper()
	var od v1alpha1.OnlineDeployment
	clustertest.Eventually(t, timeout, "deployment "+name, func() error {
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &od); err != nil {
			return err
		}
		if err := ok(&od); err != nil {
			return fmt.Errorf("%w (status %s %q %q, %d/%d ready)", err, od.Status.Phase, od.Status.Reason, od.Status.Message,
				od.Status.ReadyReplicas, od.Status.Replicas)
		}
		return nil
	})
	return &od
}

func inPhase(phase, reason string) func(*v1alpha1.OnlineDeployment) error {
	return func(od *v1alpha1.OnlineDeployment) error {
		if od.Status.Phase != phase || od.Status.Reason != reason {
			return fmt.Errorf("want %s %q", phase, reason)
		}
		return nil
	}
}

func readyPods(t *testing.T, c client.Client, od *v1alpha1.OnlineDeployment) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.List(context.Background(), &pods, client.InNamespace(od.Namespace),
		client.MatchingLabels{v1alpha1.LabelEndpoint: od.Spec.Endpoint, v1alpha1.LabelDeployment: od.Spec.Name}); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			out = append(out, p)
		}
	}
	return out
}

const scoreScript = `import json, os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read().strip()
    print("init done")

def run(raw_data):
    return {"model": model, "got": json.loads(raw_data)}
`

// Outpost's scoring server runs a real score.py with its model in a
// deployment's pod: the deployment Succeeds, its pod answers liveness and
// scoring requests, and its log reaches the workspace. A score.py whose
// init() raises fails its deployment with the traceback.
func TestClusterScoringServer(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c)
	createInstanceType(t, c, "scoring-small", res("50m", "64Mi"), res("1", "512Mi"))
	runAPI.put("ep1", "blue", api.DeploymentRun{Name: "blue", Endpoint: "ep1", ResourceGroup: "rg", Workspace: "ws",
		ModelURI: "azureml://datastores/workspaceblobstore/paths/models/m1/model.txt", ModelName: "m1", ModelVersion: "1",
		Code: "azureml://datastores/workspaceblobstore/paths/code/blue/", ScoringScript: "score.py"},
		map[string]string{"models/m1/model.txt": "linear-v1\n", "code/blue/score.py": scoreScript})
	od := deploy(t, c, ns, "ep1", "blue", "scoring-small")

	od = waitDeployment(t, c, ns, od.Name, 3*time.Minute, inPhase(api.ClusterDeploymentSucceeded, ""))
	if od.Status.ReadyReplicas != 1 || od.Status.Replicas != 1 || od.Status.ObservedGeneration != od.Generation {
		t.Errorf("status %+v", od.Status)
	}
	var d appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ep1-blue"}, &d); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(&d); ref == nil || ref.UID != od.UID {
		t.Errorf("Deployment owners %+v", d.OwnerReferences)
	}
	pods := readyPods(t, c, od)
	if len(pods) != 1 {
		t.Fatalf("%d ready pods", len(pods))
	}
	pod := pods[0]
	base := "http://" + net.JoinHostPort(pod.Status.PodIP, "5001")
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET / answered %s", resp.Status)
	}
	resp, err = http.Post(base+"/score", "application/json", strings.NewReader(`{"data": [[1, 2]]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Model string         `json:"model"`
		Got   map[string]any `json:"got"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Model != "linear-v1" || got.Got["data"] == nil {
		t.Errorf("POST /score: %s %s", resp.Status, body)
	}
	clustertest.Eventually(t, 30*time.Second, "the instance's log in the workspace", func() error {
		if l := runAPI.log(pod.Name); !strings.Contains(l, "init done") {
			return fmt.Errorf("log so far: %q", l)
		}
		return nil
	})

	// init() raises: Failed, InitFailed, with the traceback.
	runAPI.put("ep1", "broken", api.DeploymentRun{Name: "broken", Endpoint: "ep1", ResourceGroup: "rg", Workspace: "ws",
		Code: "azureml://datastores/workspaceblobstore/paths/code/broken/", ScoringScript: "score.py"},
		map[string]string{"code/broken/score.py": "def init():\n    raise ValueError('no model in this deployment')\n\ndef run(raw):\n    return raw\n"})
	broken := deploy(t, c, ns, "ep1", "broken", "scoring-small")
	broken = waitDeployment(t, c, ns, broken.Name, 3*time.Minute, inPhase(api.ClusterDeploymentFailed, ReasonInitFailed))
	if !strings.Contains(broken.Status.Message, "Traceback") || !strings.Contains(broken.Status.Message, "ValueError: no model in this deployment") {
		t.Errorf("message %q is not init()'s traceback", broken.Status.Message)
	}
}

// A custom container (the httpd image) runs as its image says, probed on
// its inference_config routes, with the model fetched next to it.
func TestClusterCustomContainer(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	createInstanceType(t, c, "custom-small", res("20m", "32Mi"), res("500m", "256Mi"))
	runAPI.put("ep2", "byoc", api.DeploymentRun{Name: "byoc", Endpoint: "ep2", ResourceGroup: "rg", Workspace: "ws",
		ModelURI: "azureml://datastores/workspaceblobstore/paths/models/m2/", ModelName: "m2", ModelVersion: "7"},
		map[string]string{"models/m2/weights.bin": "0123456789"})
	od := deploy(t, c, ns, "ep2", "byoc", "custom-small", custom, func(od *v1alpha1.OnlineDeployment) {
		od.Spec.ModelName, od.Spec.ModelVersion = "m2", "7"
		od.Spec.EnvironmentVariables = map[string]string{"GREETING": "hello"}
	})
	waitDeployment(t, c, ns, od.Name, 2*time.Minute, inPhase(api.ClusterDeploymentSucceeded, ""))
	pods := readyPods(t, c, od)
	if len(pods) != 1 {
		t.Fatalf("%d ready pods", len(pods))
	}
	resp, err := http.Get("http://" + net.JoinHostPort(pods[0].Status.PodIP, "80") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET / on the custom container answered %s", resp.Status)
	}
	out := clustertest.Kubectl(t, "-n", ns, "exec", pods[0].Name, "-c", ContainerName, "--", "sh", "-c",
		`echo "$AZUREML_MODEL_DIR $GREETING"; cat "$AZUREML_MODEL_DIR/weights.bin"`)
	if want := "/var/azureml-app/azureml-models/m2/7 hello\n0123456789"; out != want {
		t.Errorf("in the container: %q, want %q", out, want)
	}
}

// A deployment whose instance type has no room on any node fails with the
// scheduler's numbers; an instance type that does not exist fails at once.
func TestClusterRefusals(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	createInstanceType(t, c, "enormous-od", res("1000", "64Mi"), res("1000", "64Mi"))
	od := deploy(t, c, ns, "ep3", "big", "enormous-od", custom)
	od = waitDeployment(t, c, ns, od.Name, time.Minute, inPhase(api.ClusterDeploymentFailed, ReasonUnschedulable))
	if !strings.Contains(od.Status.Message, "0/1 nodes are available") || !strings.Contains(od.Status.Message, "Insufficient cpu") {
		t.Errorf("message %q lacks the scheduler's numbers", od.Status.Message)
	}

	unknown := deploy(t, c, ns, "ep3", "unknown", "no-such-type", custom)
	unknown = waitDeployment(t, c, ns, unknown.Name, 30*time.Second, inPhase(api.ClusterDeploymentFailed, ReasonInstanceTypeNotFound))
	if !strings.Contains(unknown.Status.Message, `"no-such-type" not found`) || !strings.Contains(unknown.Status.Message, "enormous-od") {
		t.Errorf("message %q does not list the known instance types", unknown.Status.Message)
	}

	// A Deployment of the name that is someone else's is left alone.
	taken := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep3-taken"},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "mine"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "mine"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: "pause"}}}},
		},
	}
	if err := c.Create(context.Background(), taken); err != nil {
		t.Fatal(err)
	}
	conflict := deploy(t, c, ns, "ep3", "taken", "enormous-od", custom)
	conflict = waitDeployment(t, c, ns, conflict.Name, 30*time.Second, inPhase(api.ClusterDeploymentFailed, ReasonNameConflict))
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(taken), taken); err != nil || len(taken.OwnerReferences) != 0 ||
		taken.Spec.Template.Spec.Containers[0].Image != "pause" {
		t.Errorf("someone else's Deployment was changed (%v): %+v", err, taken.ObjectMeta)
	}

	// The printer columns show it.
	out := clustertest.Kubectl(t, "-n", ns, "get", "od", "ep3-big")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ENDPOINT DEPLOYMENT PHASE READY REPLICAS REASON AGE" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "ep3-big ep3 big Failed 0 1 Unschedulable") {
		t.Errorf("kubectl get od:\n%s", out)
	}
}

// setLoad is what the stand-in router answers on GET /load.
func setLoad(t *testing.T, c client.Client, cm *corev1.ConfigMap, l api.RouterLoad) {
	t.Helper()
	data, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"load": string(data)}
	if err := c.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

// Scaling: status.replicas (the autoscaler's choice) drives the
// Deployment; the autoscaler scales up at once from the load a router
// replica reports on its admin port, and down one instance after the load
// has stayed low. The router stand-in is a real HTTP server in a pod
// labelled as the router's, answering GET /load as the router does.
func TestClusterScaling(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c)
	createInstanceType(t, c, "scale-small", res("10m", "16Mi"), res("500m", "128Mi"))
	runAPI.put("ep4", "auto", api.DeploymentRun{Name: "auto", Endpoint: "ep4", ResourceGroup: "rg", Workspace: "ws"}, nil)
	od := deploy(t, c, ns, "ep4", "auto", "scale-small", custom, func(od *v1alpha1.OnlineDeployment) {
		od.Spec.Scale = v1alpha1.Scale{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 3,
			PollingIntervalSeconds: 1, TargetUtilizationPercent: 70}
	})
	od = waitDeployment(t, c, ns, od.Name, 2*time.Minute, func(od *v1alpha1.OnlineDeployment) error {
		if od.Status.Phase != api.ClusterDeploymentSucceeded || od.Status.Replicas != 1 {
			return fmt.Errorf("want Succeeded on 1 instance (min)")
		}
		return nil
	})

	// The autoscaler's choice, written as it writes it.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(od), od); err != nil {
			return err
		}
		od.Status.Replicas = 2
		return c.Status().Update(ctx, od)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDeployment(t, c, ns, od.Name, 2*time.Minute, func(od *v1alpha1.OnlineDeployment) error {
		if od.Status.Phase != api.ClusterDeploymentSucceeded || od.Status.ReadyReplicas != 2 || len(readyPods(t, c, od)) != 2 {
			return fmt.Errorf("want Succeeded with 2 ready instances")
		}
		return nil
	})

	// A router replica reports 3 requests for the deployment: on 2
	// instances of concurrency 1 that is 150 %, above 70 %: up to
	// ceil(3/0.7) = 5, at most 3.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: extension.Namespace, Name: "load-" + ns}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), cm) })
	setLoad(t, c, cm, api.RouterLoad{Replica: "stand-in", Deployments: []api.DeploymentLoad{
		{Namespace: ns, Endpoint: "ep4", Deployment: "auto", InFlight: 2, Queued: 1},
		{Namespace: ns, Endpoint: "ep4", Deployment: "other", InFlight: 40},
	}})
	router := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: extension.Namespace, Name: "router-" + ns, Labels: map[string]string{"app": extension.RouterApp}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "load", Image: "python:3.12",
				Command: []string{"python3", "-m", "http.server", strconv.Itoa(extension.RouterAdminPort), "--directory", "/srv"},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/load", Port: intstr.FromInt32(extension.RouterAdminPort)}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "load", MountPath: "/srv"}},
			}},
			Volumes: []corev1.Volume{{Name: "load", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}},
		},
	}
	if err := c.Create(ctx, router); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background(), router, client.GracePeriodSeconds(0)) })
	up := waitDeployment(t, c, ns, od.Name, 2*time.Minute, func(od *v1alpha1.OnlineDeployment) error {
		if od.Status.Replicas != 3 || od.Status.LastScaleTime == nil {
			return fmt.Errorf("want 3 instances asked for")
		}
		return nil
	})
	scaledUp := up.Status.LastScaleTime.Time
	waitDeployment(t, c, ns, od.Name, 2*time.Minute, func(od *v1alpha1.OnlineDeployment) error {
		if od.Status.Phase != api.ClusterDeploymentSucceeded || od.Status.ReadyReplicas != 3 {
			return fmt.Errorf("want Succeeded with 3 ready instances")
		}
		return nil
	})
	var d appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ep4-auto"}, &d); err != nil || *d.Spec.Replicas != 3 {
		t.Errorf("Deployment replicas %v (%v), want 3", d.Spec.Replicas, err)
	}

	// Quiet: one instance fewer after 20 polls in a row below the target,
	// not before.
	setLoad(t, c, cm, api.RouterLoad{Replica: "stand-in"})
	down := waitDeployment(t, c, ns, od.Name, 90*time.Second, func(od *v1alpha1.OnlineDeployment) error {
		if od.Status.Replicas != 2 {
			return fmt.Errorf("want 2 instances asked for")
		}
		return nil
	})
	if took := down.Status.LastScaleTime.Sub(scaledUp); took < 20*time.Second {
		t.Errorf("scaled down %s after scaling up: sooner than 20 polls of 1 s", took)
	}
}

// The CRDs' schemas refuse what the operator and the router could not
// use, whoever writes the objects.
func TestClusterSchemas(t *testing.T) {
	cluster(t)
	ns := namespace(t, kube)
	kubectl := func(manifest string) (string, int) {
		out, errOut, code := clustertest.RunWithInput(t, strings.NewReader(manifest), nil, "kubectl", "--kubeconfig", clustertest.Cluster.Kubeconfig,
			"-n", ns, "create", "--dry-run=server", "--validate=false", "-f", "-")
		return out + errOut, code
	}
	endpoint := func(spec string) string {
		return "apiVersion: inference.outpost.dev/v1alpha1\nkind: OnlineEndpoint\nmetadata: {name: e}\nspec: " + spec + "\n"
	}
	deployment := func(extra string) string {
		return "apiVersion: inference.outpost.dev/v1alpha1\nkind: OnlineDeployment\nmetadata: {name: d}\nspec:\n" +
			"  deploymentId: x\n  name: blue\n  endpoint: e\n  image: python\n  secretName: s\n" +
			"  request: {timeoutMs: 5000, maxConcurrentPerInstance: 1, maxQueueWaitMs: 500}\n" + extra
	}
	okScale := "  scale: {type: target_utilization, minInstances: 1, maxInstances: 3}\n"
	for _, c := range []struct {
		name, manifest, want string
	}{
		{"traffic not summing to 100", endpoint(`{endpointId: x, name: e, authMode: key, secretName: s, traffic: {blue: 90, green: 5}}`), "traffic must sum to 100"},
		{"traffic above 100", endpoint(`{endpointId: x, name: e, authMode: key, secretName: s, traffic: {blue: 101}}`), "spec.traffic.blue"},
		{"unknown auth mode", endpoint(`{endpointId: x, name: e, authMode: aad_token, secretName: s}`), "spec.authMode"},
		{"endpoint name not a label", endpoint(`{endpointId: x, name: "my endpoint", authMode: key, secretName: s}`), "spec.name"},
		{"max under min", deployment("  scale: {type: target_utilization, minInstances: 3, maxInstances: 2}\n"), "not below minInstances"},
		{"unknown scale type", deployment("  scale: {type: sometimes}\n"), "spec.scale.type"},
		{"liveness success threshold", deployment(okScale + "  liveness: {successThreshold: 2}\n"), "successThreshold must be 1"},
		{"a resource not allowed", deployment(okScale + "  resources: {limits: {ephemeral-storage: 1Gi}}\n"), "may name only"},
		{"requests above limits", deployment(okScale + "  resources: {requests: {cpu: 2}, limits: {cpu: 1}}\n"), "requests.cpu must not be above limits.cpu"},
		{"route without a port", deployment(okScale + "  inferenceConfig: {liveness: {path: /}, readiness: {port: 80, path: /}, scoring: {port: 80, path: /}}\n"), "port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if out, code := kubectl(c.manifest); code == 0 || !strings.Contains(out, c.want) {
				t.Errorf("exit %d\n%s\nwant a refusal naming %q", code, out, c.want)
			}
		})
	}
	for _, m := range []string{
		endpoint(`{endpointId: x, name: e, authMode: aml_token, secretName: s, traffic: {blue: 90, green: 10}}`),
		endpoint(`{endpointId: x, name: e, authMode: key, secretName: s, traffic: {blue: 0, green: 0}}`),
		deployment(okScale + "  resources: {requests: {cpu: 500m}, limits: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1}}\n"),
	} {
		if out, code := kubectl(m); code != 0 {
			t.Errorf("a valid object refused:\n%s\n%s", m, out)
		}
	}
}
