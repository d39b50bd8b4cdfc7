package kubesource

// Tests against the local Outpost cluster: the CRDs and the router's RBAC
// as the extension renders them, the router running in-process as its
// service account, real pods (the httpd image) as a deployment's
// instances. `go test -short` leaves them out (and starts no cluster).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/api"
	inferencev1 "outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/extension"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	clustertest.Main(m)
}

func clients(t *testing.T) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	if clustertest.Cluster == nil {
		t.Skip("no test cluster (-short)")
	}
	dyn, err := dynamic.NewForConfig(clustertest.Cluster.REST)
	if err != nil {
		t.Fatal(err)
	}
	return clustertest.Cluster.Client, dyn
}

// install creates what the extension renders for the router: its
// namespace, service account, RBAC, ConfigMap and the inference CRDs.
func install(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	objs, err := extension.Render(extension.Settings{EnableInference: true, AllowInsecureConnections: true},
		extension.RenderOptions{Name: "ml", Image: "outpost:test", NodeCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = clustertest.InstallRendered(ctx, objs, func(kind, name string) bool {
		return kind == "Namespace" ||
			name == "azureml-fe" && (kind == "ServiceAccount" || kind == "Role" || kind == "RoleBinding") ||
			name == "ml-azureml-fe" && strings.HasPrefix(kind, "ClusterRole") ||
			kind == "ConfigMap" && name == extension.RouterConfigName
	})
	if err != nil {
		t.Fatal(err)
	}
}

type routerProc struct {
	url, admin string
	log        *clustertest.Log
	done       chan error
	cancel     context.CancelFunc
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRouter runs the router in-process as rc says (impersonating its
// service account, or not).
func startRouter(t *testing.T, rc *rest.Config, namespace string, https bool) *routerProc {
	t.Helper()
	httpPort, httpsPort, admin := freePort(t), freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &routerProc{admin: fmt.Sprintf("http://127.0.0.1:%d", admin), log: &clustertest.Log{}, done: make(chan error, 1), cancel: cancel}
	p.url = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if https {
		p.url = fmt.Sprintf("https://127.0.0.1:%d", httpsPort)
	}
	go func() {
		p.done <- Run(ctx, rc, Options{Namespace: namespace, PodName: "fe-test", Address: "127.0.0.1",
			HTTPPort: httpPort, HTTPSPort: httpsPort, AdminPort: admin,
			Log: slog.New(slog.NewTextHandler(p.log, nil))})
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("router log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *routerProc) get(path string) (int, string, error) {
	res, err := http.Get(p.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

func (p *routerProc) score(key string, hdr ...string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, p.url+"/api/v1/endpoint/ep/score", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

func expect(p *routerProc, key string, status int, contains string) func() error {
	return func() error {
		code, body, err := p.score(key)
		if err != nil {
			return err
		}
		if code != status || !strings.Contains(body, contains) {
			return fmt.Errorf("%d %q, want %d with %q", code, body, status, contains)
		}
		return nil
	}
}

var (
	endpointsRes   = inferencev1.GroupVersion.WithResource(inferencev1.EndpointResource)
	deploymentsRes = inferencev1.GroupVersion.WithResource(inferencev1.DeploymentResource)
)

func TestClusterRouting(t *testing.T) {
	kube, dyn := clients(t)
	install(t)
	ctx := context.Background()
	rc := rest.CopyConfig(clustertest.Cluster.REST)
	// The router's rendered RBAC must be enough.
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + extension.Namespace + ":azureml-fe"}
	p := startRouter(t, rc, extension.Namespace, false)
	clustertest.Eventually(t, time.Minute, "/readyz 200", func() error {
		code, body, err := p.get("/readyz")
		if err == nil && code != 200 {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})

	const ns = "team-router"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep-keys", Labels: map[string]string{inferencev1.LabelEndpoint: "ep"}},
		Data:       map[string][]byte{inferencev1.SecretPrimaryKey: []byte("key-one"), inferencev1.SecretSecondaryKey: []byte("key-two")},
	}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, keys, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createCR(t, dyn, endpointsRes, ns, &inferencev1.OnlineEndpoint{
		TypeMeta:   metav1.TypeMeta{APIVersion: inferencev1.GroupVersion.String(), Kind: inferencev1.EndpointKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep"},
		Spec: inferencev1.OnlineEndpointSpec{EndpointID: "id-ep", Name: "ep", AuthMode: api.AuthModeKey, SecretName: "ep-keys",
			Traffic: map[string]int32{"blue": 100}},
	})
	clustertest.Eventually(t, time.Minute, "the endpoint routed", expect(p, "key-one", http.StatusServiceUnavailable, `"blue\" of endpoint \"ep\" gets traffic but is not on the cluster`))
	route := inferencev1.Route{Port: 80, Path: "/"}
	createCR(t, dyn, deploymentsRes, ns, &inferencev1.OnlineDeployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: inferencev1.GroupVersion.String(), Kind: inferencev1.DeploymentKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep-blue"},
		Spec: inferencev1.OnlineDeploymentSpec{DeploymentID: "id-blue", Name: "blue", Endpoint: "ep", Image: "httpd:2.4",
			Scale:           inferencev1.Scale{Type: api.ScaleDefault, InstanceCount: 1},
			Request:         inferencev1.Request{TimeoutMS: 5000, MaxConcurrentPerInstance: 2, MaxQueueWaitMS: 500},
			Liveness:        inferencev1.Probe{PeriodSeconds: 10, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 30},
			Readiness:       inferencev1.Probe{PeriodSeconds: 10, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 30},
			InferenceConfig: &inferencev1.InferenceConfig{Liveness: route, Readiness: route, Scoring: route},
			SecretName:      "ep-blue-credentials"},
	})
	clustertest.Eventually(t, time.Minute, "no ready instance", expect(p, "key-one", http.StatusServiceUnavailable, "has no ready instance"))

	// An instance as the inference operator would run it: labelled with
	// the endpoint and deployment, ready by its probe on the scoring port.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep-blue-0",
			Labels: map[string]string{inferencev1.LabelEndpoint: "ep", inferencev1.LabelDeployment: "blue"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "inference-server", Image: "httpd:2.4",
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
				PeriodSeconds: 1},
		}}},
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 2*time.Minute, "routed to the ready pod", expect(p, "key-one", http.StatusOK, ""))
	if code, body, err := p.score("key-two"); err != nil || code != http.StatusOK {
		t.Fatalf("the secondary key: %d %s %v", code, body, err)
	}
	if code, body, _ := p.score("not-a-key"); code != http.StatusForbidden {
		t.Fatalf("a wrong key got %d %s", code, body)
	}

	// Key rotation: the Secret changes, the old key stops working.
	keys.Data[inferencev1.SecretPrimaryKey] = []byte("key-three")
	if _, err := kube.CoreV1().Secrets(ns).Update(ctx, keys, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, time.Minute, "the old key refused", expect(p, "key-one", http.StatusForbidden, "not one of"))
	clustertest.Eventually(t, time.Minute, "the new key taken", expect(p, "key-three", http.StatusOK, ""))

	// /load and /metrics of the admin port.
	code, body, err := p.get("/load")
	var load api.RouterLoad
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &load) != nil || load.Replica != "fe-test" ||
		len(load.Deployments) != 1 || load.Deployments[0] != (api.DeploymentLoad{Namespace: ns, Endpoint: "ep", Deployment: "blue"}) {
		t.Fatalf("/load: %d %s %v", code, body, err)
	}
	code, body, err = p.get("/metrics")
	for _, want := range []string{
		`azureml_fe_instances_ready{deployment="blue",endpoint="ep",namespace="` + ns + `"} 1`,
		`azureml_fe_requests_total{code="200",deployment="blue",endpoint="ep"}`,
	} {
		if err != nil || code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s: %d %v\n%s", want, code, err, body)
		}
	}

	// Router replicas: ready pods labelled app=azureml-fe in its namespace.
	for i := range 2 {
		fe := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: extension.Namespace, Name: "azureml-fe-" + strconv.Itoa(i), Labels: map[string]string{"app": "azureml-fe"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "fe", Image: "httpd:2.4"}}},
		}
		if _, err := kube.CoreV1().Pods(extension.Namespace).Create(ctx, fe, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clustertest.Eventually(t, 2*time.Minute, "R = 2", func() error {
		_, body, err := p.get("/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "azureml_fe_replicas_ready 2\n") {
			return errors.New("azureml_fe_replicas_ready is not 2")
		}
		return nil
	})

	// The pod goes: no ready instance again.
	if err := kube.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, time.Minute, "no ready instance after the pod's deletion", expect(p, "key-three", http.StatusServiceUnavailable, "has no ready instance"))
}

func createCR(t *testing.T, dyn dynamic.Interface, res schema.GroupVersionResource, ns string, obj runtime.Object) {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(res).Namespace(ns).Create(context.Background(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server refuses the %s: %v", res.Resource, err)
	}
}

func TestClusterHTTPS(t *testing.T) {
	kube, _ := clients(t)
	ctx := context.Background()
	const ns = "fe-tls"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cert1, key1 := selfSigned(t, "one")
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fe-cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert1, corev1.TLSPrivateKeyKey: key1}}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: extension.RouterConfigName},
		Data: map[string]string{extension.RouterConfigHTTPS: "true", extension.RouterConfigTLSSecret: "fe-cert"}}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := startRouter(t, clustertest.Cluster.REST, ns, true)
	host := strings.TrimPrefix(p.url, "https://")
	served := func(maxVersion uint16) (string, error) {
		c, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	clustertest.Eventually(t, time.Minute, "serving certificate one", func() error {
		cn, err := served(0)
		if err == nil && cn != "one" {
			err = fmt.Errorf("serving %q", cn)
		}
		return err
	})
	if _, err := served(tls.VersionTLS11); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	cert2, key2 := selfSigned(t, "two")
	sec.Data = map[string][]byte{corev1.TLSCertKey: cert2, corev1.TLSPrivateKeyKey: key2}
	if _, err := kube.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, time.Minute, "serving certificate two", func() error {
		cn, err := served(0)
		if err == nil && cn != "two" {
			err = fmt.Errorf("serving %q", cn)
		}
		return err
	})
	// A change of mode ends the router (its pod restarts in the new one).
	cm.Data = map[string]string{extension.RouterConfigHTTPS: "false"}
	if _, err := kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("the router ended with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the router kept serving HTTPS after the ConfigMap said https=false")
	}
}

func selfSigned(t *testing.T, cn string) ([]byte, []byte) {
	t.Helper()
	_, cert, key, err := clustertest.SelfSigned(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
