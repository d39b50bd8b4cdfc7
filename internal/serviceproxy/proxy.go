// Package serviceproxy makes Services reachable from the host by proxying TCP
// in user space.
//
// Outpost runs no kube-proxy and has no iptables rules: every pod is a host
// process with its own loopback address, and the service CIDR is a loopback
// range too. Listening on those addresses and copying bytes to a ready
// endpoint is therefore all it takes to make NodePort, LoadBalancer and
// ClusterIP services work for processes on the host.
package serviceproxy

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

const (
	dialTimeout = 2 * time.Second
	// resyncEvery bounds how long a busy port stays unserved after it is freed:
	// nothing tells us when another process lets go of it.
	resyncEvery = 30 * time.Second
)

// Only this range routes to lo on Linux, so only here can we bind a
// ClusterIP without configuring the host.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// Options configures a Proxy.
type Options struct {
	NodeIP string       // address NodePorts listen on; "" means "127.0.0.1"
	Logger *slog.Logger // nil means slog.Default()
	// Reserved are cluster IPs that their own servers listen on (the
	// cluster DNS): the proxy leaves them alone, as binding them would
	// take their ports away.
	Reserved []netip.Addr
}

// Proxy serves the TCP ports of Services. Create it with New and start it
// with Run, once.
type Proxy struct {
	client kubernetes.Interface
	nodeIP string
	log    *slog.Logger
	resync time.Duration
	// reserved holds Options.Reserved.
	reserved []netip.Addr

	endpointSlices discoverylisters.EndpointSliceLister
	wg             sync.WaitGroup // accept loops and proxied connections

	// Touched only by the goroutine running Run, so they need no lock.
	listeners map[string]*listener // by listen address
	noted     map[string]bool      // conditions already logged
}

// target is what a listener forwards to: one port of one service.
type target struct {
	namespace, service, port string // port is the service port's name
	// affinity is how long a client stays with its endpoint
	// (sessionAffinity: ClientIP); 0 for none.
	affinity time.Duration
}

func (t target) String() string {
	if t.port == "" {
		return t.namespace + "/" + t.service
	}
	return t.namespace + "/" + t.service + ":" + t.port
}

type listener struct {
	net.Listener
	// The target can change without the address changing (a port renamed),
	// and re-binding would refuse connections in between.
	target atomic.Pointer[target]
	next   atomic.Uint64 // round-robin position

	mu     sync.Mutex
	sticky map[string]stickyEndpoint // client IP -> its endpoint, with affinity
}

type stickyEndpoint struct {
	endpoint string
	used     time.Time
}

// New returns a Proxy that reads Services and EndpointSlices through client.
func New(client kubernetes.Interface, opts Options) *Proxy {
	p := &Proxy{
		client:    client,
		nodeIP:    cmp.Or(opts.NodeIP, "127.0.0.1"),
		log:       opts.Logger,
		resync:    resyncEvery,
		reserved:  opts.Reserved,
		listeners: map[string]*listener{},
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	return p
}

// Run watches Services and EndpointSlices (shared informers, all namespaces)
// and blocks until ctx is done, then closes every listener it opened and
// every connection it proxies before returning.
func (p *Proxy) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(p.client, 0)
	defer factory.Shutdown()
	services := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	p.endpointSlices = sliceInformer.Lister()

	// Endpoints are looked up per connection, so only Services drive syncs.
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := services.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, obj any) { poke(obj) },
		DeleteFunc: poke,
	}); err != nil {
		return err
	}
	sliceInformer.Informer() // registers it with the factory before Start

	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), services.Informer().HasSynced, sliceInformer.Informer().HasSynced) {
		return nil // ctx is done
	}

	tick := time.NewTicker(p.resync)
	defer tick.Stop()
	for {
		p.sync(ctx, services.Lister())
		select {
		case <-ctx.Done():
			for addr, l := range p.listeners {
				l.Close()
				delete(p.listeners, addr)
			}
			p.wg.Wait()
			return nil
		case <-kick:
		case <-tick.C:
		}
	}
}

// sync makes the open listeners match the Services in the cache. Doing the
// whole set each time keeps it simple; a local cluster has few Services.
func (p *Proxy) sync(ctx context.Context, lister corelisters.ServiceLister) {
	svcs, err := lister.List(labels.Everything())
	if err != nil {
		p.log.Error("listing services", "err", err)
		return
	}
	// The apiserver keeps node ports and cluster IPs unique, so addresses
	// clash only if NodeIP lies in the service CIDR; sorting makes the
	// winner stable instead of flapping between syncs.
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	noted := map[string]bool{}
	want := map[string]target{}
	for _, svc := range svcs {
		for _, sp := range svc.Spec.Ports {
			t := target{namespace: svc.Namespace, service: svc.Name, port: sp.Name, affinity: affinity(svc)}
			if !isTCP(sp) {
				p.note(noted, t.String()+"/"+string(sp.Protocol), "skipping non-TCP service port",
					"service", t, "port", sp.Port, "protocol", sp.Protocol)
				continue
			}
			for _, addr := range p.addresses(svc, sp) {
				if _, taken := want[addr]; !taken {
					want[addr] = t
				}
			}
		}
	}
	p.noted = noted

	for addr, l := range p.listeners {
		if _, ok := want[addr]; !ok {
			l.Close()
			delete(p.listeners, addr)
			p.log.Info("stopped listening", "service", l.target.Load(), "address", addr)
		}
	}
	for addr, t := range want {
		if l, ok := p.listeners[addr]; ok {
			l.target.Store(&t)
			continue
		}
		p.listen(ctx, addr, t)
	}
	for _, svc := range svcs {
		p.publishIngress(ctx, svc)
	}
}

// note logs a standing condition once instead of on every sync.
func (p *Proxy) note(noted map[string]bool, key, msg string, args ...any) {
	noted[key] = true
	if !p.noted[key] {
		p.log.Info(msg, args...)
	}
}

func isTCP(sp corev1.ServicePort) bool {
	return sp.Protocol == "" || sp.Protocol == corev1.ProtocolTCP
}

// addresses lists where one service port should be served on this host.
func (p *Proxy) addresses(svc *corev1.Service, sp corev1.ServicePort) []string {
	var addrs []string
	if (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) && sp.NodePort != 0 {
		addrs = append(addrs, hostPort(p.nodeIP, sp.NodePort))
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		// "None" (headless) fails to parse and is skipped with the rest.
		if a, err := netip.ParseAddr(ip); err == nil && loopback.Contains(a.Unmap()) && !slices.Contains(p.reserved, a.Unmap()) {
			addrs = append(addrs, hostPort(ip, sp.Port))
		}
	}
	return addrs
}

func hostPort(ip string, port int32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

func (p *Proxy) listen(ctx context.Context, addr string, t target) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		// Most likely another host process holds the port; the next sync retries.
		p.log.Warn("cannot listen for service port, will retry", "service", t, "address", addr, "err", err)
		return
	}
	l := &listener{Listener: ln}
	l.target.Store(&t)
	p.listeners[addr] = l
	p.log.Info("listening", "service", t, "address", addr)
	p.wg.Go(func() { p.serve(ctx, l) })
}

// publishIngress gives a LoadBalancer service an ingress address, which is
// what a cloud controller would do, so tools waiting for an external IP
// proceed. The address is the service's own cluster IP when that is a
// loopback address (the local cluster's), where the proxy answers on the
// service's ports, so ingress IP and port reach it as a cloud load
// balancer's would; otherwise the node address, where it answers on the
// node ports. Services with a loadBalancerClass belong to another
// controller.
func (p *Proxy) publishIngress(ctx context.Context, svc *corev1.Service) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil {
		return
	}
	ip, byServicePort := p.nodeIP, false
	if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && loopback.Contains(a) {
		ip, byServicePort = a.String(), true
	}
	if hasIngress(svc, ip) {
		return
	}
	// Advertise the address only once it actually answers.
	listening := false
	for _, sp := range svc.Spec.Ports {
		if !isTCP(sp) {
			continue
		}
		addr := hostPort(ip, sp.Port)
		if !byServicePort {
			if sp.NodePort == 0 {
				continue
			}
			addr = hostPort(ip, sp.NodePort)
		}
		if _, ok := p.listeners[addr]; !ok {
			return
		}
		listening = true
	}
	if !listening {
		return
	}
	api := p.client.CoreV1().Services(svc.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != svc.UID || cur.Spec.Type != corev1.ServiceTypeLoadBalancer || hasIngress(cur, ip) {
			return nil // changed under us; the next sync decides afresh
		}
		cur.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		_, err = api.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		p.log.Warn("setting load balancer ingress, will retry", "service", svc.Namespace+"/"+svc.Name, "err", err)
	}
}

// hasIngress compares only the IP: the apiserver fills in fields such as
// ipMode, and comparing those would rewrite the status forever.
func hasIngress(svc *corev1.Service, ip string) bool {
	in := svc.Status.LoadBalancer.Ingress
	return len(in) == 1 && in[0].IP == ip
}

func (p *Proxy) serve(ctx context.Context, l *listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Typically out of file descriptors: spinning would not help.
			p.log.Warn("accept failed", "address", l.Addr(), "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p.wg.Go(func() { p.proxy(ctx, l, conn) })
	}
}

func (p *Proxy) proxy(ctx context.Context, l *listener, client net.Conn) {
	defer client.Close()
	t := *l.target.Load()
	eps := p.endpoints(t)
	if len(eps) == 0 {
		// Closing at once tells the client to retry, as a refused SYN would.
		p.log.Debug("no ready endpoints", "service", t)
		return
	}
	backend := p.dial(ctx, l, t, eps, clientIP(client))
	if backend == nil {
		return
	}
	defer backend.Close()
	// Unblocks both copies so Run can return once ctx is done.
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		backend.Close()
	})
	defer stop()

	var wg sync.WaitGroup
	wg.Go(func() { pipe(backend, client) })
	pipe(client, backend)
	wg.Wait()
}

// dial connects to the endpoint whose turn it is, moving on to the next one
// if that fails so that one dead pod costs a retry, not a failed request.
func (p *Proxy) dial(ctx context.Context, l *listener, t target, eps []string, client string) net.Conn {
	d := net.Dialer{Timeout: dialTimeout}
	n := uint64(len(eps))
	start := l.next.Add(1) - 1
	if t.affinity > 0 {
		// A client with affinity goes back to its endpoint while it is still
		// one of the service's and the client came back in time.
		l.mu.Lock()
		if st, ok := l.sticky[client]; ok && time.Since(st.used) < t.affinity {
			if i := slices.Index(eps, st.endpoint); i >= 0 {
				start = uint64(i)
			}
		}
		l.mu.Unlock()
	}
	for i := range n {
		ep := eps[(start+i)%n]
		conn, err := d.DialContext(ctx, "tcp", ep)
		if err == nil {
			if t.affinity > 0 {
				l.mu.Lock()
				if l.sticky == nil {
					l.sticky = map[string]stickyEndpoint{}
				}
				if len(l.sticky) > 4096 {
					for ip, st := range l.sticky {
						if time.Since(st.used) >= t.affinity {
							delete(l.sticky, ip)
						}
					}
				}
				l.sticky[client] = stickyEndpoint{endpoint: ep, used: time.Now()}
				l.mu.Unlock()
			}
			return conn
		}
		p.log.Warn("endpoint unreachable", "service", t, "endpoint", ep, "err", err)
	}
	return nil
}

// endpoints lists the ready endpoints of a service port as host:port,
// sorted so that round robin sees the same order from one connection to the
// next, and deduplicated because an endpoint can sit in two slices while
// they are being rebalanced.
func (p *Proxy) endpoints(t target) []string {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: t.service})
	list, err := p.endpointSlices.EndpointSlices(t.namespace).List(sel)
	if err != nil {
		return nil
	}
	var eps []string
	for _, s := range list {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue // as kube-proxy: never set by the endpoint controller
		}
		port, ok := slicePort(s, t.port)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			eps = append(eps, hostPort(ep.Addresses[0], port))
		}
	}
	slices.Sort(eps)
	return slices.Compact(eps)
}

func slicePort(s *discoveryv1.EndpointSlice, name string) (int32, bool) {
	for _, sp := range s.Ports {
		if sp.Port != nil && ptrOr(sp.Name, "") == name && ptrOr(sp.Protocol, corev1.ProtocolTCP) == corev1.ProtocolTCP {
			return *sp.Port, true
		}
	}
	return 0, false
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// pipe copies src to dst and then half-closes dst, so a peer that signals
// the end of its request by shutting down its write side still gets the
// response.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		// A reset on either side ends the exchange in both directions.
		dst.Close()
		src.Close()
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}

// affinity is how long a Service keeps a client with one endpoint:
// sessionAffinity ClientIP, by default for 3 hours as upstream.
func affinity(svc *corev1.Service) time.Duration {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return 0
	}
	secs := int32(corev1.DefaultClientIPServiceAffinitySeconds)
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		secs = *c.ClientIP.TimeoutSeconds
	}
	return time.Duration(secs) * time.Second
}

// clientIP is the address a connection came from, without its port.
func clientIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
