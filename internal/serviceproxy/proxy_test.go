package serviceproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	nodeIP = "127.0.0.1"
	ns     = "default"
)

// running is a Proxy under test.
type running struct {
	client *fake.Clientset
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, objs ...runtime.Object) *running {
	return startWith(t, nil, objs...)
}

func startWith(t *testing.T, tweak func(*Proxy), objs ...runtime.Object) *running {
	t.Helper()
	client := fake.NewClientset(objs...)
	// The fake clientset drops events that happen between an informer's list
	// and its watch, so tests change objects only once both watches exist.
	var mu sync.Mutex
	watching := map[string]bool{}
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		mu.Lock()
		watching[a.GetResource().Resource] = err == nil
		mu.Unlock()
		return true, w, err
	})

	p := New(client, Options{
		NodeIP: nodeIP,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if tweak != nil {
		tweak(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{client: client, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(r.stop(t))
	waitFor(t, "informers watching", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return watching["services"] && watching["endpointslices"]
	})
	return r
}

func (r *running) stop(t *testing.T) func() {
	return func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort asks the kernel for a port that is free on ip right now.
func freePort(t *testing.T, ip string) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// backend serves addr, answering each connection with "name:" followed by
// all the client sent once the client half-closes. Getting the reply thus
// shows bytes flowed both ways and the half-close went through.
func backend(t *testing.T, addr, name string) *atomic.Int32 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	hits := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				got, _ := io.ReadAll(c)
				c.Write(append([]byte(name+":"), got...))
			}()
		}
	}()
	return hits
}

// fetch sends "ping" to addr, half-closes, and returns the whole reply.
func fetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	return string(got), err
}

func answers(t *testing.T, addr, want string) {
	t.Helper()
	var got string
	waitFor(t, addr+" to answer "+want, func() bool {
		got, _ = fetch(addr)
		return got == want
	})
}

func refused(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, addr+" to refuse connections", func() bool { return !dialable(addr) })
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func hostport(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

func service(name string, typ corev1.ServiceType, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: typ, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
}

func tcpPort(name string, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, NodePort: nodePort}
}

func slice(svc, name string, ports map[string]int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: new(n), Protocol: new(corev1.ProtocolTCP), Port: new(p)})
	}
	return s
}

func endpoint(ip string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func TestServiceAnswers(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (objs []runtime.Object, addr, want string)
	}{{
		name: "NodePort on node IP",
		setup: func(t *testing.T) ([]runtime.Object, string, string) {
			bp, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
			backend(t, hostport("127.77.0.2", bp), "web")
			return []runtime.Object{
				service("web", corev1.ServiceTypeNodePort, "10.96.0.10", tcpPort("", 80, np)),
				slice("web", "web-1", map[string]int32{"": bp}, endpoint("127.77.0.2", nil)),
			}, hostport(nodeIP, np), "web:ping"
		},
	}, {
		name: "LoadBalancer on node IP",
		setup: func(t *testing.T) ([]runtime.Object, string, string) {
			bp, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
			backend(t, hostport("127.77.0.2", bp), "lb")
			return []runtime.Object{
				service("lb", corev1.ServiceTypeLoadBalancer, "10.96.0.11", tcpPort("http", 80, np)),
				slice("lb", "lb-1", map[string]int32{"http": bp}, endpoint("127.77.0.2", new(true))),
			}, hostport(nodeIP, np), "lb:ping"
		},
	}, {
		name: "ClusterIP in 127/8",
		setup: func(t *testing.T) ([]runtime.Object, string, string) {
			bp, sp := freePort(t, "127.77.0.2"), freePort(t, "127.96.0.10")
			backend(t, hostport("127.77.0.2", bp), "db")
			return []runtime.Object{
				service("db", corev1.ServiceTypeClusterIP, "127.96.0.10", tcpPort("", sp, 0)),
				slice("db", "db-1", map[string]int32{"": bp}, endpoint("127.77.0.2", nil)),
			}, hostport("127.96.0.10", sp), "db:ping"
		},
	}, {
		name: "second named port goes to its own target port",
		setup: func(t *testing.T) ([]runtime.Object, string, string) {
			http, metrics := freePort(t, "127.77.0.2"), freePort(t, "127.77.0.2")
			np1, np2 := freePort(t, nodeIP), freePort(t, nodeIP)
			backend(t, hostport("127.77.0.2", http), "http")
			backend(t, hostport("127.77.0.2", metrics), "metrics")
			return []runtime.Object{
				service("app", corev1.ServiceTypeNodePort, "10.96.0.12",
					tcpPort("http", 80, np1), tcpPort("metrics", 9090, np2),
					corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: freePort(t, nodeIP)}),
				slice("app", "app-1", map[string]int32{"http": http, "metrics": metrics}, endpoint("127.77.0.2", nil)),
			}, hostport(nodeIP, np2), "metrics:ping"
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, addr, want := tt.setup(t)
			start(t, objs...)
			answers(t, addr, want)
		})
	}
}

func TestRoundRobinSkipsNotReady(t *testing.T) {
	port, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
	backend(t, hostport("127.77.0.2", port), "a")
	backend(t, hostport("127.77.0.3", port), "b")
	notReady := backend(t, hostport("127.77.0.4", port), "c")
	start(t,
		service("web", corev1.ServiceTypeNodePort, "10.96.0.10", tcpPort("http", 80, np)),
		slice("web", "web-1", map[string]int32{"http": port},
			endpoint("127.77.0.2", new(true)), endpoint("127.77.0.4", new(false))),
		slice("web", "web-2", map[string]int32{"http": port}, endpoint("127.77.0.3", nil)),
	)
	addr := hostport(nodeIP, np)
	answers(t, addr, "a:ping")

	var prev string
	seen := map[string]int{}
	for i := range 6 {
		got, err := fetch(addr)
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if got == prev {
			t.Errorf("fetch %d: %q twice in a row, want alternation", i, got)
		}
		prev = got
		seen[got]++
	}
	if seen["a:ping"] != 3 || seen["b:ping"] != 3 {
		t.Errorf("replies = %v, want 3 from each ready endpoint", seen)
	}
	if n := notReady.Load(); n != 0 {
		t.Errorf("not-ready endpoint got %d connections", n)
	}
}

func TestDeadEndpointFallsThrough(t *testing.T) {
	port, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
	backend(t, hostport("127.77.0.2", port), "a")
	start(t,
		service("web", corev1.ServiceTypeNodePort, "10.96.0.10", tcpPort("", 80, np)),
		// Nothing listens on 127.77.0.5, so dialing it is refused.
		slice("web", "web-1", map[string]int32{"": port}, endpoint("127.77.0.2", nil), endpoint("127.77.0.5", nil)),
	)
	addr := hostport(nodeIP, np)
	answers(t, addr, "a:ping")
	for i := range 4 {
		if got, err := fetch(addr); got != "a:ping" {
			t.Errorf("fetch %d = %q, %v; want a:ping", i, got, err)
		}
	}
}

func TestNoReadyEndpointClosesConnection(t *testing.T) {
	tests := []struct {
		name   string
		slices []runtime.Object
	}{
		{"no slices", nil},
		{"only not-ready endpoints", []runtime.Object{
			slice("web", "web-1", map[string]int32{"": 8080}, endpoint("127.77.0.2", new(false))),
		}},
		{"no slice port with the service port's name", []runtime.Object{
			slice("web", "web-1", map[string]int32{"other": 8080}, endpoint("127.77.0.2", nil)),
		}},
		{"slice of another service", []runtime.Object{
			slice("api", "api-1", map[string]int32{"": 8080}, endpoint("127.77.0.2", nil)),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := freePort(t, nodeIP)
			start(t, append(tt.slices, service("web", corev1.ServiceTypeNodePort, "10.96.0.10", tcpPort("", 80, np)))...)
			addr := hostport(nodeIP, np)
			waitFor(t, "listener", func() bool { return dialable(addr) })
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Second))
			got, err := io.ReadAll(c)
			if len(got) != 0 || isTimeout(err) {
				t.Errorf("read %q, %v; want the connection closed at once", got, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestServiceChangesMoveListeners(t *testing.T) {
	port, np1, np2 := freePort(t, "127.77.0.2"), freePort(t, nodeIP), freePort(t, nodeIP)
	backend(t, hostport("127.77.0.2", port), "a")
	sp := freePort(t, "127.96.0.20")
	clusterAddr := hostport("127.96.0.20", sp)
	svc := service("web", corev1.ServiceTypeNodePort, "127.96.0.20", tcpPort("", sp, np1))
	r := start(t, svc, slice("web", "web-1", map[string]int32{"": port}, endpoint("127.77.0.2", nil)))
	api := r.client.CoreV1().Services(ns)
	ctx := context.Background()
	answers(t, hostport(nodeIP, np1), "a:ping")
	answers(t, clusterAddr, "a:ping")

	svc.Spec.Ports[0].NodePort = np2
	if _, err := api.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	refused(t, hostport(nodeIP, np1))
	answers(t, hostport(nodeIP, np2), "a:ping")

	svc.Spec.Type, svc.Spec.Ports[0].NodePort = corev1.ServiceTypeClusterIP, 0
	if _, err := api.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	refused(t, hostport(nodeIP, np2))
	answers(t, clusterAddr, "a:ping")

	if err := api.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	refused(t, clusterAddr)
}

func TestLoadBalancerIngress(t *testing.T) {
	tests := []struct {
		name      string
		class     *string
		clusterIP string
		want      []corev1.LoadBalancerIngress
	}{
		{"no class gets the node IP", nil, "10.96.0.10", []corev1.LoadBalancerIngress{{IP: nodeIP}}},
		{"a loopback cluster IP is its own ingress", nil, "127.77.0.30", []corev1.LoadBalancerIngress{{IP: "127.77.0.30"}}},
		{"another controller's class is left alone", new("example.com/lb"), "10.96.0.10", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := freePort(t, nodeIP)
			port := freePort(t, "127.77.0.30")
			svc := service("lb", corev1.ServiceTypeLoadBalancer, tt.clusterIP, tcpPort("", port, np))
			svc.Spec.LoadBalancerClass = tt.class
			r := start(t, svc)
			waitFor(t, "listener", func() bool { return dialable(hostport(nodeIP, np)) })
			var got []corev1.LoadBalancerIngress
			check := func() bool {
				cur, err := r.client.CoreV1().Services(ns).Get(context.Background(), "lb", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				got = cur.Status.LoadBalancer.Ingress
				return len(got) == len(tt.want) && (len(got) == 0 || got[0].IP == tt.want[0].IP)
			}
			if tt.want == nil {
				time.Sleep(200 * time.Millisecond) // give a wrong update time to land
			}
			waitFor(t, "ingress", check)
			if len(got) == 1 {
				// The advertised address answers on the service's port (or,
				// on the node address, on the node port).
				addr := hostport(got[0].IP, port)
				if got[0].IP == nodeIP {
					addr = hostport(nodeIP, np)
				}
				if !dialable(addr) {
					t.Errorf("ingress %s does not answer", addr)
				}
			}
		})
	}
}

func TestBusyPortIsRetried(t *testing.T) {
	port, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
	backend(t, hostport("127.77.0.2", port), "a")
	squatter, err := net.Listen("tcp", hostport(nodeIP, np))
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	r := startWith(t, func(p *Proxy) { p.resync = 50 * time.Millisecond },
		service("lb", corev1.ServiceTypeLoadBalancer, "10.96.0.10", tcpPort("", 80, np)),
		slice("lb", "lb-1", map[string]int32{"": port}, endpoint("127.77.0.2", nil)),
	)
	time.Sleep(200 * time.Millisecond)
	cur, _ := r.client.CoreV1().Services(ns).Get(context.Background(), "lb", metav1.GetOptions{})
	if in := cur.Status.LoadBalancer.Ingress; len(in) != 0 {
		t.Errorf("ingress %v published while the port was busy", in)
	}

	squatter.Close()
	answers(t, hostport(nodeIP, np), "a:ping")
}

func TestCancelEndsListenersAndConnections(t *testing.T) {
	port, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
	hits := backend(t, hostport("127.77.0.2", port), "a")
	r := start(t,
		service("web", corev1.ServiceTypeNodePort, "10.96.0.10", tcpPort("", 80, np)),
		slice("web", "web-1", map[string]int32{"": port}, endpoint("127.77.0.2", nil)),
	)
	addr := hostport(nodeIP, np)
	answers(t, addr, "a:ping")
	before := hits.Load()

	// Without a half-close the backend keeps this connection open.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "connection to reach the backend", func() bool { return hits.Load() == before+1 })

	r.stop(t)()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(c); isTimeout(err) {
		t.Error("proxied connection still open after Run returned")
	}
	refused(t, addr)
}

// A reserved cluster IP (the cluster DNS's) is left to its own server: the
// proxy serves the other Services but never takes that address's port.
func TestReservedClusterIPIsLeftAlone(t *testing.T) {
	bp := freePort(t, "127.77.0.2")
	backend(t, hostport("127.77.0.2", bp), "web")
	sp, dnsPort := freePort(t, "127.77.0.20"), freePort(t, "127.77.0.10")
	startWith(t, func(p *Proxy) { p.reserved = []netip.Addr{netip.MustParseAddr("127.77.0.10")} },
		service("kube-dns", corev1.ServiceTypeClusterIP, "127.77.0.10", tcpPort("dns-tcp", dnsPort, 0)),
		service("web", corev1.ServiceTypeClusterIP, "127.77.0.20", tcpPort("", sp, 0)),
		slice("web", "web-1", map[string]int32{"": bp}, endpoint("127.77.0.2", nil)),
	)
	// Once web answers, the proxy has synced both Services.
	answers(t, hostport("127.77.0.20", sp), "web:ping")
	l, err := net.Listen("tcp", hostport("127.77.0.10", dnsPort))
	if err != nil {
		t.Fatalf("the reserved address's port is taken: %v", err)
	}
	l.Close()
}

// sessionAffinity ClientIP keeps a client with the endpoint it first got,
// where round robin would alternate.
func TestClientIPAffinity(t *testing.T) {
	port, np := freePort(t, "127.77.0.2"), freePort(t, nodeIP)
	backend(t, hostport("127.77.0.2", port), "a")
	backend(t, hostport("127.77.0.3", port), "b")
	svc := service("sticky", corev1.ServiceTypeNodePort, "10.96.0.11", tcpPort("http", 80, np))
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	start(t, svc, slice("sticky", "sticky-1", map[string]int32{"http": port},
		endpoint("127.77.0.2", nil), endpoint("127.77.0.3", nil)))
	addr := hostport(nodeIP, np)
	waitFor(t, "the service answers", func() bool { _, err := fetch(addr); return err == nil })
	first, err := fetch(addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		got, err := fetch(addr)
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if got != first {
			t.Fatalf("fetch %d: %q, want %q again: the client has affinity to its endpoint", i, got, first)
		}
	}
}
