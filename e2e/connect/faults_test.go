package connect

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
)

// connectProxy is an HTTP CONNECT proxy on loopback that counts tunnels.
type connectProxy struct {
	l       net.Listener
	tunnels atomic.Int64
}

func startProxy(t *testing.T) *connectProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

func (p *connectProxy) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	host, _, _ := net.SplitHostPort(req.Host)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\n\r\n") // tests reach loopback only
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go io.Copy(up, br)
	io.Copy(c, up)
}

func TestFaultsAndProxy(t *testing.T) {
	w := startWorkspace(t)
	proxy := startProxy(t)
	connectC1(t, w, "--proxy-https", "http://"+proxy.l.Addr().String())
	if n := proxy.tunnels.Load(); n == 0 {
		t.Fatal("the agent connected without going through the proxy")
	}
	create(w, "arcml-extension", "--config", "enableTraining=True")
	ctx := context.Background()
	// Every write to an object bumps its resourceVersion, and a delete and
	// create changes its UID, while server-side apply of unchanged content
	// stores nothing: so these tell whether the agent changed anything.
	before := extensionObjects(t, "arcml-extension")
	if _, ok := before["Deployment azureml/cluster-status-reporter"]; !ok {
		t.Fatalf("the extension's objects lack its status reporter: %v", before)
	}

	t.Run("workspace killed with -9 and restarted", func(t *testing.T) {
		w.T = t
		w.Kill9()
		w.Serve()
		clustertest.Eventually(t, 60*time.Second, "agent reconnected by itself", func() error {
			if c := showCluster(w, "c1"); c.ConnectivityStatus != api.Connected {
				return fmt.Errorf("connectivity %s", c.ConnectivityStatus)
			}
			return nil
		})
		if e := showExtension(w, "arcml-extension"); e.InstallState != api.InstallInstalled || e.Generation != 1 {
			t.Fatalf("extension after the restart: %+v", e)
		}
	})

	t.Run("agent pod deleted", func(t *testing.T) {
		w.T = t
		pods := clustertest.Cluster.Client.CoreV1().Pods("azure-arc")
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=outpost-agent"})
		if err != nil || len(list.Items) != 1 {
			t.Fatalf("agent pods: %v %v", list, err)
		}
		old := list.Items[0].Name
		if err := pods.Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		clustertest.Eventually(t, 60*time.Second, "a new agent pod runs and reports", func() error {
			list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=outpost-agent"})
			if err != nil {
				return err
			}
			for _, p := range list.Items {
				if p.Name != old && p.Status.Phase == "Running" {
					if c := showCluster(w, "c1"); c.ConnectivityStatus == api.Connected {
						return nil
					}
				}
			}
			return fmt.Errorf("%d agent pods, none new and running", len(list.Items))
		})
		clustertest.Eventually(t, 60*time.Second, "the new agent applied its desired state", func() error {
			list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=outpost-agent"})
			if err != nil {
				return err
			}
			for _, p := range list.Items {
				if p.Name == old {
					continue
				}
				log, err := pods.GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
				if err != nil {
					return err
				}
				if !strings.Contains(string(log), `msg="applied extension" extension=arcml-extension`) {
					return fmt.Errorf("agent %s has not logged an apply yet", p.Name)
				}
			}
			return nil
		})
		// Neither the restarted agent nor the reconnection before changed
		// anything: no object rewritten, recreated, added or left over.
		after := extensionObjects(t, "arcml-extension")
		var changed []string
		for id, v := range before {
			if after[id] != v {
				changed = append(changed, fmt.Sprintf("%s (%s -> %s)", id, v, after[id]))
			}
		}
		for id := range after {
			if _, ok := before[id]; !ok {
				changed = append(changed, id+" (new)")
			}
		}
		if len(changed) > 0 {
			sort.Strings(changed)
			t.Fatalf("the agent wrote objects again although nothing changed (uid/resourceVersion):\n%s", strings.Join(changed, "\n"))
		}
		for _, app := range []string{"cluster-status-reporter", "training-operator"} {
			rs, err := clustertest.Cluster.Client.AppsV1().ReplicaSets("azureml").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.Items) != 1 {
				t.Fatalf("%d ReplicaSets of %s, want 1", len(rs.Items), app)
			}
		}
	})

	t.Run("agent stopped shows Offline within two heartbeats", func(t *testing.T) {
		w.T = t
		clustertest.Kubectl(t, "scale", "deployment/outpost-agent", "-n", "azure-arc", "--replicas=0")
		clustertest.Eventually(t, 30*time.Second, "agent pod gone", func() error {
			list, _ := clustertest.Cluster.Client.CoreV1().Pods("azure-arc").List(ctx, metav1.ListOptions{})
			if len(list.Items) > 0 {
				return fmt.Errorf("%d pods", len(list.Items))
			}
			return nil
		})
		stopped := time.Now()
		clustertest.Eventually(t, 10*time.Second, "Offline", func() error {
			if c := showCluster(w, "c1"); c.ConnectivityStatus != api.Offline {
				return fmt.Errorf("connectivity %s", c.ConnectivityStatus)
			}
			return nil
		})
		t.Logf("Offline %.1fs after the agent stopped (heartbeat %s)", time.Since(stopped).Seconds(), heartbeat)
		if d := time.Since(stopped); d > 3*heartbeat+2*time.Second {
			t.Fatalf("Offline only after %s", d)
		}
		clustertest.Kubectl(t, "scale", "deployment/outpost-agent", "-n", "azure-arc", "--replicas=1")
		clustertest.Eventually(t, 60*time.Second, "Connected again", func() error {
			if c := showCluster(w, "c1"); c.ConnectivityStatus != api.Connected {
				return fmt.Errorf("connectivity %s", c.ConnectivityStatus)
			}
			return nil
		})
	})
}

// extensionObjects finds every object in the cluster that carries the
// extension's label, of any kind the cluster serves (not only those the
// agent knows of), as "Kind namespace/name" -> "uid/resourceVersion".
func extensionObjects(t *testing.T, ext string) map[string]string {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(clustertest.Cluster.REST)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(clustertest.Cluster.REST)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]string{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue // a subresource, or a kind that cannot be listed (and so not pruned either)
			}
			list, err := dyn.Resource(gv.WithResource(r.Name)).List(context.Background(), metav1.ListOptions{LabelSelector: "outpost.dev/extension=" + ext})
			if err != nil {
				t.Fatalf("list %s: %v", r.Name, err)
			}
			for _, o := range list.Items {
				objs[fmt.Sprintf("%s %s/%s", r.Kind, o.GetNamespace(), o.GetName())] = fmt.Sprintf("%s/%s", o.GetUID(), o.GetResourceVersion())
			}
		}
	}
	return objs
}

func TestValidationThroughCLI(t *testing.T) {
	w := startWorkspace(t)
	connectC1(t, w, "--no-wait")
	cert, _ := writePEMs(t, t.TempDir())
	_, otherKey := writePEMs(t, t.TempDir())
	cases := []struct {
		name     string
		settings []string
		want     string
	}{
		{"neither training nor inference", []string{"--config", "enableTraining=False"}, "enableInference"},
		{"inference without TLS or allowInsecureConnections", []string{"--config", "enableInference=True"}, "allowInsecureConnections=True"},
		{"same key plain and protected", []string{"--config", "enableTraining=True", "--config-protected", "enableTraining=True"}, "enableTraining"},
		{"NodePort with an internal load balancer", []string{"--config", "enableInference=True", "allowInsecureConnections=True", "privateEndpointNodeport=True", "privateEndpointILB=True"}, "internal load balancer"},
		{"unknown key", []string{"--config", "enableTraining=True", "enableTrainning=True"}, "did you mean enableTraining"},
		{"bad value", []string{"--config", "enableInference=True", "allowInsecureConnections=Ture"}, "must be True or False"},
		{"namespace scope", []string{"--config", "enableTraining=True", "--scope", "namespace"}, "--scope namespace"},
		{"missing PEM file", []string{"--config", "enableInference=True", "--config-protected", "sslCertPemFile=/nonexistent.pem", "sslKeyPemFile=" + otherKey}, "sslCertPemFile"},
		{"certificate and key do not match", []string{"--config", "enableInference=True", "--config-protected", "sslCertPemFile=" + cert, "sslKeyPemFile=" + otherKey}, "match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.T = t
			args := []string{"k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
				"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", "rg", "--no-wait"}
			out, errOut, code := w.Outpost(append(args, tc.settings...)...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q\n%s", code, errOut, tc.want, out)
			}
			if strings.Contains(errOut+out, "PRIVATE KEY") {
				t.Fatal("output shows key material")
			}
			var list []api.Extension
			if err := json.Unmarshal([]byte(w.Must("k8s-extension", "list", "-g", "rg", "-c", "c1", "-o", "json")), &list); err != nil || len(list) != 0 {
				t.Fatalf("stored although invalid: %v %v", list, err)
			}
		})
	}
}
