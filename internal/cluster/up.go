package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/node"
	"outpost.dev/outpost/internal/pki"
)

// ErrAlreadyRunning is returned by Up when every component already runs.
var ErrAlreadyRunning = errors.New("cluster already running")

// controlPlane are the components before the nodes, in start order.
var controlPlane = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// components are the cluster's components in start order: the control plane,
// then the nodes ("node", "node-1", ...). Down stops them in reverse, the
// nodes first so that they can stop their pods while the apiserver answers.
func (c *Config) components() []string {
	names := slices.Clone(controlPlane)
	for i := range c.nodeCount() {
		names = append(names, nodeComponent(i))
	}
	return names
}

// strayNodes are node components recorded in run/ beyond the cluster's
// --nodes (a record of an earlier, larger cluster).
func (c *Config) strayNodes() []string {
	files, _ := filepath.Glob(c.path("run", "node-*.json"))
	var stray []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if i := nodeIndex(name); i >= c.nodeCount() {
			stray = append(stray, name)
		}
	}
	slices.SortFunc(stray, func(a, b string) int { return nodeIndex(a) - nodeIndex(b) })
	return stray
}

// portOwner is the component listening on each port of portRoles.
var portOwner = map[string]string{"kube-apiserver": "kube-apiserver", "etcd (client)": "etcd", "etcd (peer)": "etcd",
	"node agent": "node", "kube-controller-manager": "kube-controller-manager", "kube-scheduler": "kube-scheduler"}

// Up starts what of the cluster does not run, keeps what does, and returns
// once its node is Ready and the default service account exists, so a pod
// created right after is admitted. Progress goes to out. On failure what it
// started is stopped again; what ran before is left running.
func Up(ctx context.Context, c *Config, out io.Writer) (err error) {
	c.Defaults()
	if err := c.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the local node runs every pod in its own mount and PID namespace, which needs root; run `outpost cluster up` as root")
	}
	for _, f := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"} {
		if _, err := os.Stat(c.KubeBinDir + "/" + f); err != nil {
			return fmt.Errorf("%s is missing from %s; build the upstream binaries with `make kube`", f, c.KubeBinDir)
		}
	}
	if err := checkWritable(c.Dir); err != nil {
		return err
	}
	unlock, err := c.lock(func() { fmt.Fprintf(out, "waiting for another `outpost cluster` command on %s ...\n", c.Dir) })
	if err != nil {
		return err
	}
	defer unlock()

	specs, err := c.nodes()
	if err != nil {
		return err
	}
	states := map[string]componentState{}
	all, some := true, false
	for _, name := range c.components() {
		st, err := c.state(name)
		if err != nil {
			return err
		}
		states[name] = st
		all = all && st.supervised
		some = some || st.supervised || st.running
	}
	for _, name := range c.strayNodes() {
		if st, err := c.state(name); err != nil {
			return err
		} else if st.supervised || st.running {
			return fmt.Errorf("the cluster in %s runs %s, a node beyond --nodes %d; removing nodes needs `outpost cluster down` first, then `outpost cluster up --nodes %d`", c.Dir, name, c.nodeCount(), c.nodeCount())
		}
	}
	if some {
		if err := c.sameSettings(specs, states); err != nil {
			return err
		}
	}
	type port struct {
		n           int
		role, owner string
	}
	var ports []port
	for i, role := range portRoles {
		ports = append(ports, port{c.APIPort + i, role, portOwner[role]})
	}
	for _, n := range specs[1:] {
		ports = append(ports, port{n.Port, "node agent of " + n.Name, n.Component})
	}
	for _, p := range ports {
		if states[p.owner].supervised {
			continue // ours, kept
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.n)))
		if err != nil {
			return fmt.Errorf("port %d (%s) on 127.0.0.1 is in use; the cluster takes ports %d-%d, choose another base with --api-port", p.n, p.role, c.APIPort, c.lastPort())
		}
		l.Close()
	}
	if err := c.writeFiles(); err != nil {
		return fmt.Errorf("write cluster files in %s: %w", c.Dir, err)
	}

	var procs []*launched
	defer func() {
		if err != nil {
			for i := len(procs) - 1; i >= 0; i-- {
				if _, serr := c.stopComponent(procs[i].name, stopGrace(procs[i].name)); serr != nil {
					fmt.Fprintf(out, "stopping %s: %v\n", procs[i].name, serr)
				}
				procs[i].kill()
			}
		}
	}()
	t0 := time.Now()
	quiet := all // a no-op says so once, not per component
	step := func(name string, ready func(context.Context) error) error {
		st := states[name]
		if !st.supervised && st.running {
			// Its supervisor was lost (killed on its own); start afresh.
			if _, err := c.stopComponent(name, stopGrace(name)); err != nil {
				return err
			}
		}
		if !quiet {
			fmt.Fprintf(out, "%-45s", map[bool]string{true: name + " runs, keeping it ...", false: "starting " + name + " ..."}[st.supervised])
		}
		t := time.Now()
		var p *launched
		if !st.supervised {
			var lerr error
			p, lerr = c.launch(name)
			if p != nil {
				procs = append(procs, p)
			}
			if lerr != nil {
				fmt.Fprintln(out, "failed")
				return fmt.Errorf("%w\n--- last lines of %s ---\n%s", lerr, c.LogPath(name), c.logTail(name, 20))
			}
		}
		if err := c.waitFor(ctx, name, p, ready); err != nil {
			if !quiet {
				fmt.Fprintln(out, "failed")
			}
			return fmt.Errorf("%s did not come up: %w\n--- last lines of %s ---\n%s", name, err, c.LogPath(name), c.logTail(name, 20))
		}
		if !quiet {
			fmt.Fprintf(out, "ready (%.1fs)\n", time.Since(t).Seconds())
		}
		return nil
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := step("etcd", c.etcdHealthy); err != nil {
		return err
	}
	if err := step("kube-apiserver", c.apiserverReady); err != nil {
		return err
	}
	if err := step("kube-controller-manager", func(ctx context.Context) error {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := step("kube-scheduler", func(ctx context.Context) error { return c.componentHealthy(ctx, "kube-scheduler") }); err != nil {
		return err
	}
	for _, spec := range specs {
		if err := step(spec.Component, func(ctx context.Context) error {
			// The Node object may still say Ready for an agent that died; the agent's
			// own port answers only while it runs, and it opens it after registering.
			if err := c.nodeAgentHealthy(ctx, spec.Port); err != nil {
				return err
			}
			n, err := client.CoreV1().Nodes().Get(ctx, spec.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, t := range n.Spec.Taints {
				if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
					return fmt.Errorf("node has taint %s (lifted by the node lifecycle controller once Ready)", t.Key)
				}
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return errors.New("node not Ready")
		}); err != nil {
			return err
		}
	}
	// Labels given to a running cluster reach its nodes now; nodes started
	// just now registered with them.
	changed := false
	for _, spec := range specs {
		ch, err := node.ApplyLabels(ctx, client, spec.Name, spec.Labels)
		if err != nil {
			return fmt.Errorf("labels of node %s: %w", spec.Name, err)
		}
		if ch {
			fmt.Fprintf(out, "labels of node %s updated\n", spec.Name)
		}
		changed = changed || ch
	}
	removed, err := c.removeStaleNodes(ctx, client, out)
	if err != nil {
		return err
	}
	if all && !changed && !removed {
		return ErrAlreadyRunning
	}
	fmt.Fprintf(out, "cluster ready in %.1fs\n", time.Since(t0).Seconds())
	return nil
}

// sameSettings refuses to change the addresses of a cluster while parts of it
// run with the saved ones: the parts would no longer find each other. Nodes
// may be added to a running cluster when the nodes that run keep their pod
// range and capacity.
func (c *Config) sameSettings(specs []nodeSpec, states map[string]componentState) error {
	saved, err := Load(c.Dir)
	if err != nil {
		return err
	}
	saved.Defaults()
	for _, f := range []struct{ flag, was, now string }{
		{"--api-port", strconv.Itoa(saved.APIPort), strconv.Itoa(c.APIPort)},
		{"--pod-cidr", saved.PodCIDR, c.PodCIDR},
		{"--service-cidr", saved.ServiceCIDR, c.ServiceCIDR},
		{"--node-port-range", saved.NodePortRange, c.NodePortRange},
		{"--node-name", saved.NodeName, c.NodeName},
	} {
		if f.was != f.now {
			return fmt.Errorf("the cluster in %s runs with %s %s, not %s; stop it with `outpost cluster down` to change that", c.Dir, f.flag, f.was, f.now)
		}
	}
	if c.nodeCount() < saved.nodeCount() {
		for _, name := range saved.components()[len(controlPlane)+c.nodeCount():] {
			if st, err := c.state(name); err != nil {
				return err
			} else if st.supervised || st.running {
				return fmt.Errorf("the cluster in %s runs %d nodes; removing nodes needs `outpost cluster down` first, then `outpost cluster up --nodes %d`", c.Dir, saved.nodeCount(), c.nodeCount())
			}
		}
	}
	was, err := saved.nodes()
	if err != nil {
		return err
	}
	for _, spec := range specs {
		if spec.Index >= len(was) {
			break
		}
		if st := states[spec.Component]; !st.supervised && !st.running {
			continue // started afresh with the new settings
		}
		old := was[spec.Index]
		if old.PodCIDR != spec.PodCIDR || old.CPU != spec.CPU || old.Memory != spec.Memory {
			hint := ""
			if old.PodCIDR == spec.PodCIDR && old.CPU != "" && old.Memory != "" {
				hint = fmt.Sprintf(", or keep the running nodes' capacity with --node-cpu %s --node-memory %s", old.CPU, old.Memory)
			}
			return fmt.Errorf("node %s runs with %s; with --nodes %d it would have %s, which a running node cannot change: stop the cluster with `outpost cluster down` first%s",
				spec.Name, old.describe(), c.nodeCount(), spec.describe(), hint)
		}
	}
	return nil
}

// describe says what of a node `up` cannot change while it runs.
func (n nodeSpec) describe() string {
	cpu, mem := n.CPU, n.Memory
	if cpu == "" {
		cpu = "the machine's"
	}
	if mem == "" {
		mem = "the machine's"
	}
	return fmt.Sprintf("pod range %s, %s CPU, %s memory", n.PodCIDR, cpu, mem)
}

// removeStaleNodes deletes the Nodes of process nodes the cluster no longer
// has (it ran with more --nodes, or another --node-name), and their pods, as
// upstream's pod garbage collector would, so that controllers place them
// again. It tells whether it removed any.
func (c *Config) removeStaleNodes(ctx context.Context, client kubernetes.Interface, out io.Writer) (bool, error) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "outpost.dev/node=process"})
	if err != nil {
		return false, err
	}
	removed := false
	for _, n := range nodes.Items {
		if slices.Contains(c.NodeNames(), n.Name) {
			continue
		}
		fmt.Fprintf(out, "removing node %s (the cluster has %d node(s): %s) and its pods\n", n.Name, c.nodeCount(), strings.Join(c.NodeNames(), ", "))
		pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
		if err != nil {
			return removed, err
		}
		for _, p := range pods.Items {
			if err := client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil && !apierrors.IsNotFound(err) {
				return removed, fmt.Errorf("delete pod %s/%s of removed node %s: %w", p.Namespace, p.Name, n.Name, err)
			}
		}
		if err := client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return removed, fmt.Errorf("delete node %s: %w", n.Name, err)
		}
		removed = true
	}
	return removed, nil
}

// waitFor polls ready until it succeeds or a minute passes. For a component
// this call launched (p), an exit of the component or its supervisor fails at
// once: a crash during `up` is reported, not retried.
func (c *Config) waitFor(ctx context.Context, name string, p *launched, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		var done <-chan struct{}
		if p != nil {
			done = p.done
			if rec, err := c.readRecord(name); err != nil {
				return err
			} else if rec.Restarts > 0 {
				return fmt.Errorf("process exited (%s)", rec.LastExit)
			}
		}
		select {
		case <-done:
			return fmt.Errorf("its supervisor exited (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready after a minute: %v", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Config) etcdHealthy(ctx context.Context) error {
	return httpOK(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/health", c.Port("etcd (client)")), "")
}

func (c *Config) apiserverReady(ctx context.Context) error {
	cfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	return httpOK(ctx, hc, cfg.Host+"/readyz", "")
}

// nodeAgentHealthy asks the node agent's /healthz, with the certificate the
// apiserver uses for it (the agent requires one).
func (c *Config) nodeAgentHealthy(ctx context.Context, port int) error {
	cert, err := tls.LoadX509KeyPair(c.path("pki", "apiserver-kubelet-client.crt"), c.path("pki", "apiserver-kubelet-client.key"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no certificate", c.path("pki", "ca.crt"))
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	return httpOK(ctx, hc, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), "ok")
}

// componentHealthy asks a control-plane component's own /healthz; its serving
// certificate is self-signed by the component, hence no verification.
func (c *Config) componentHealthy(ctx context.Context, name string) error {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return httpOK(ctx, hc, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Port(name)), "ok")
}

func httpOK(ctx context.Context, hc *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || (want != "" && strings.TrimSpace(string(body)) != want) {
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// identities are the users of the token file: the admin, each control-plane
// component, and the node.
var identities = []struct{ name, user, groups string }{
	{"admin", "outpost-admin", "system:masters"},
	{"kube-controller-manager", "system:kube-controller-manager", ""},
	{"kube-scheduler", "system:kube-scheduler", ""},
	// The node reads every pod's secrets and mints their tokens; the upstream Node
	// authorizer would do the same job with more moving parts.
	{"node", "system:node:", "system:nodes,system:masters"},
}

// writeFiles creates, once, the PKI, tokens and kubeconfigs; a restart keeps them
// so that kubeconfigs handed out earlier stay valid.
func (c *Config) writeFiles() error {
	if err := c.save(); err != nil {
		return err
	}
	if _, err := os.Stat(c.path("pki", "ca.crt")); err != nil {
		ca, err := pki.NewCA("outpost-local-ca")
		if err != nil {
			return err
		}
		if err := ca.WriteFiles(c.path("pki", "ca.crt"), c.path("pki", "ca.key")); err != nil {
			return err
		}
		_, svc, _ := net.ParseCIDR(c.ServiceCIDR)
		firstSvc := svc.IP.To4()
		firstSvc = net.IPv4(firstSvc[0], firstSvc[1], firstSvc[2], firstSvc[3]+1)
		lo := []net.IP{net.IPv4(127, 0, 0, 1)}
		reqs := []struct {
			file string
			req  pki.Request
		}{
			{"apiserver", pki.Request{CommonName: "kube-apiserver", Server: true, IPs: append(lo, firstSvc),
				DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}}},
			{"apiserver-kubelet-client", pki.Request{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true}},
			{"node", pki.Request{CommonName: "system:node:" + c.NodeName, Server: true, IPs: lo, DNSNames: []string{"localhost", c.NodeName}}},
		}
		for _, r := range reqs {
			if err := ca.Issue(r.req, c.path("pki", r.file+".crt"), c.path("pki", r.file+".key")); err != nil {
				return err
			}
		}
		if err := pki.WriteServiceAccountKey(c.path("pki", "sa.key"), c.path("pki", "sa.pub")); err != nil {
			return err
		}
	}
	if _, err := os.Stat(c.path("pki", "tokens.csv")); err != nil {
		var b strings.Builder
		for _, id := range identities {
			user := id.user
			if strings.HasSuffix(user, ":") {
				user += c.NodeName
			}
			fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", randomToken(), user, user, id.groups)
		}
		if err := os.WriteFile(c.path("pki", "tokens.csv"), []byte(b.String()), 0o600); err != nil {
			return err
		}
	}
	tokens, err := c.tokens()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	for _, id := range identities {
		file := c.path("kubeconfigs", id.name+".kubeconfig")
		if id.name == "admin" {
			file = c.KubeconfigPath()
		}
		kc := clientcmdapi.NewConfig()
		kc.Clusters["outpost"] = &clientcmdapi.Cluster{Server: c.serverURL(), CertificateAuthorityData: caPEM}
		kc.AuthInfos[id.name] = &clientcmdapi.AuthInfo{Token: tokens[id.name]}
		kc.Contexts["outpost"] = &clientcmdapi.Context{Cluster: "outpost", AuthInfo: id.name}
		kc.CurrentContext = "outpost"
		if err := os.MkdirAll(c.path("kubeconfigs"), 0o700); err != nil {
			return err
		}
		if err := clientcmd.WriteToFile(*kc, file); err != nil {
			return err
		}
		if err := os.Chmod(file, 0o600); err != nil {
			return err
		}
	}
	return c.writeNodeFiles(caPEM, tokens["node"])
}

// writeNodeFiles writes each node's configuration and, for the nodes after
// the first, their certificate (made once) and kubeconfig. The first node
// keeps the token identity it always had; the others authenticate with a
// client certificate of their own (system:node:<name>), which the apiserver
// takes without a restart.
func (c *Config) writeNodeFiles(caPEM []byte, firstToken string) error {
	specs, err := c.nodes()
	if err != nil {
		return err
	}
	var ca *pki.CA
	for _, spec := range specs {
		if spec.Index > 0 {
			crt, key := c.nodeCert(spec)
			if _, err := os.Stat(crt); err != nil {
				if ca == nil {
					if ca, err = pki.LoadCA(c.path("pki", "ca.crt"), c.path("pki", "ca.key")); err != nil {
						return err
					}
				}
				if err := os.MkdirAll(c.path("pki", "nodes"), 0o700); err != nil {
					return err
				}
				if err := ca.Issue(pki.Request{CommonName: "system:node:" + spec.Name, Organization: []string{"system:nodes", "system:masters"},
					Server: true, Client: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost", spec.Name}}, crt, key); err != nil {
					return err
				}
			}
			kc := clientcmdapi.NewConfig()
			kc.Clusters["outpost"] = &clientcmdapi.Cluster{Server: c.serverURL(), CertificateAuthorityData: caPEM}
			kc.AuthInfos[spec.Name] = &clientcmdapi.AuthInfo{ClientCertificate: crt, ClientKey: key}
			kc.Contexts["outpost"] = &clientcmdapi.Context{Cluster: "outpost", AuthInfo: spec.Name}
			kc.CurrentContext = "outpost"
			file := c.path("kubeconfigs", spec.Component+".kubeconfig")
			if err := clientcmd.WriteToFile(*kc, file); err != nil {
				return err
			}
			if err := os.Chmod(file, 0o600); err != nil {
				return err
			}
		}
		if err := c.nodeConfig(spec, len(specs)).Save(c.path(spec.Component, "config.json")); err != nil {
			return err
		}
	}
	return nil
}

// nodeCert is the certificate and key of a node after the first.
func (c *Config) nodeCert(spec nodeSpec) (string, string) {
	return c.path("pki", "nodes", spec.Name+".crt"), c.path("pki", "nodes", spec.Name+".key")
}

func (c *Config) serverURL() string { return fmt.Sprintf("https://127.0.0.1:%d", c.APIPort) }

// tokens maps identity names to their bearer tokens, in identities order.
func (c *Config) tokens() (map[string]string, error) {
	data, err := os.ReadFile(c.path("pki", "tokens.csv"))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != len(identities) {
		return nil, fmt.Errorf("%s: expected %d tokens", c.path("pki", "tokens.csv"), len(identities))
	}
	m := map[string]string{}
	for i, id := range identities {
		tok, _, _ := strings.Cut(lines[i], ",")
		m[id.name] = tok
	}
	return m, nil
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// RESTConfig is the admin client configuration of the cluster.
func (c *Config) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// nodeConfig is the configuration of one of n nodes. The first serves the
// cluster DNS and the Service proxy for all: they listen on addresses of the
// whole machine (the DNS address, cluster IPs, 127.0.0.1:<nodePort>), and every
// pod, whatever its node, reaches them on loopback.
func (c *Config) nodeConfig(spec nodeSpec, n int) node.Config {
	cfg := node.Config{
		Name:        spec.Name,
		Kubeconfig:  c.path("kubeconfigs", spec.Component+".kubeconfig"),
		Dir:         c.path(spec.Component),
		PodCIDR:     spec.PodCIDR,
		ServiceCIDR: c.ServiceCIDR,
		Port:        spec.Port,
		TLSCert:     c.path("pki", "node.crt"),
		TLSKey:      c.path("pki", "node.key"),
		ClientCA:    c.path("pki", "ca.crt"),
		APIServer:   fmt.Sprintf("127.0.0.1:%d", c.APIPort),
		Outpost:     c.Outpost,
		KubeBinDir:  c.KubeBinDir,
		ResolvConf:  c.ResolvConf,
		CPU:         spec.CPU,
		Memory:      spec.Memory,
		Labels:      spec.Labels,
	}
	if spec.Index > 0 {
		cfg.TLSCert, cfg.TLSKey = c.nodeCert(spec)
		cfg.NoClusterServices = true
	}
	if n > 1 {
		// The GPUs of the machine are not split between nodes.
		cfg.GPUs = ptr.To(0)
	}
	return cfg
}

// command returns the binary and flags of a component.
func (c *Config) command(name string) (string, []string) {
	bin := func(b string) string { return c.KubeBinDir + "/" + b }
	p := func(parts ...string) string { return c.path(parts...) }
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", c.Port("etcd (client)"))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", c.Port("etcd (peer)"))
	common := func(component string) []string {
		kc := p("kubeconfigs", component+".kubeconfig")
		return []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--leader-elect=false", "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.Port(component)),
			"--cert-dir=" + p("pki", component)}
	}
	switch name {
	case "etcd":
		return bin("etcd"), []string{"--name=outpost", "--data-dir=" + p("etcd"),
			"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=outpost=" + peerURL, "--log-level=warn",
			// A local cluster lives and dies with this machine; fsync per write would
			// make every pod start wait on the disk for no durability anyone needs.
			"--unsafe-no-fsync"}
	case "kube-apiserver":
		return bin("kube-apiserver"), []string{"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.APIPort),
			"--tls-cert-file=" + p("pki", "apiserver.crt"), "--tls-private-key-file=" + p("pki", "apiserver.key"),
			"--client-ca-file=" + p("pki", "ca.crt"), "--token-auth-file=" + p("pki", "tokens.csv"),
			// No front proxy exists; naming a CA and a CN nobody holds keeps the
			// components' delegated authentication from complaining it is unset.
			"--requestheader-client-ca-file=" + p("pki", "ca.crt"), "--requestheader-allowed-names=outpost-front-proxy",
			"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--authorization-mode=RBAC", "--allow-privileged=true",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p("pki", "sa.pub"), "--service-account-signing-key-file=" + p("pki", "sa.key"),
			"--service-cluster-ip-range=" + c.ServiceCIDR, "--service-node-port-range=" + c.NodePortRange,
			"--kubelet-client-certificate=" + p("pki", "apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + p("pki", "apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + p("pki", "ca.crt"),
			"--kubelet-preferred-address-types=InternalIP", "--profiling=false"}
	case "kube-controller-manager":
		return bin("kube-controller-manager"), append(common(name),
			"--service-account-private-key-file="+p("pki", "sa.key"), "--root-ca-file="+p("pki", "ca.crt"),
			"--cluster-signing-cert-file="+p("pki", "ca.crt"), "--cluster-signing-key-file="+p("pki", "ca.key"),
			"--use-service-account-credentials=true",
			// No node IPAM: pods get loopback addresses from the node itself. The
			// node lifecycle controller stays: it lifts the not-ready taint that
			// admission puts on every new Node.
			"--controllers=*,-nodeipam", "--profiling=false")
	case "kube-scheduler":
		return bin("kube-scheduler"), append(common(name), "--profiling=false")
	}
	if nodeIndex(name) >= 0 {
		return c.Outpost, []string{"node", "run", "--config=" + p(name, "config.json")}
	}
	panic("unknown component " + name)
}
