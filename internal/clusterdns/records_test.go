package clusterdns

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// fakeRecords is a Records over fixed objects: a ClusterIP Service with named
// ports, a headless one with a ready endpoint with a hostname, a ready one
// without and a not-ready one, an ExternalName Service and a pod.
func fakeRecords(t *testing.T) *Records {
	t.Helper()
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	eps := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{PodIPIndex: PodIPIndexFunc})
	add := func(idx cache.Indexer, obj any) {
		if err := idx.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "ns"} }
	add(svcs, &corev1.Service{ObjectMeta: meta("web"), Spec: corev1.ServiceSpec{
		ClusterIP: "127.96.0.20", ClusterIPs: []string{"127.96.0.20"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}})
	add(svcs, &corev1.Service{ObjectMeta: meta("db"), Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}})
	add(svcs, &corev1.Service{ObjectMeta: meta("empty"), Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}})
	add(svcs, &corev1.Service{ObjectMeta: meta("ext"), Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeExternalName, ExternalName: "example.org"}})
	add(svcs, &corev1.Service{ObjectMeta: meta("alias"), Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeExternalName, ExternalName: "web.ns.svc.cluster.local"}})
	slice := &discoveryv1.EndpointSlice{ObjectMeta: meta("db-abc"), AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](15432), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"127.244.0.7"}, Hostname: ptr.To("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"127.244.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"127.244.0.9"}, Hostname: ptr.To("db-2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		}}
	slice.Labels = map[string]string{discoveryv1.LabelServiceName: "db"}
	add(eps, slice)
	add(pods, &corev1.Pod{ObjectMeta: meta("p"), Status: corev1.PodStatus{PodIP: "127.244.0.5", PodIPs: []corev1.PodIP{{IP: "127.244.0.5"}}}})
	return &Records{Domain: "cluster.local", Services: corelisters.NewServiceLister(svcs),
		Slices: discoverylisters.NewEndpointSliceLister(eps), Pods: pods}
}

// rrs renders records without their TTL and class, as dig +short would
// show their data, prefixed by their name.
func rrs(list []dns.RR) []string {
	var out []string
	for _, rr := range list {
		f := strings.Fields(rr.String())
		out = append(out, f[0]+" "+strings.Join(f[3:], " "))
	}
	return out
}

func TestRecords(t *testing.T) {
	r := fakeRecords(t)
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
	}{
		{"web.ns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"web.ns.svc.cluster.local. A 127.96.0.20"}, nil},
		{"WEB.NS.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"web.ns.svc.cluster.local. A 127.96.0.20"}, nil},
		// The name exists; it has no IPv6 address: NODATA, not NXDOMAIN, or
		// resolvers would give up on the name's A record too.
		{"web.ns.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, nil, nil},
		{"nope.ns.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"web.other.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"web.ns.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"ns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, nil, nil},
		// Headless: the ready endpoints, in address order; a not-ready one is left out.
		{"db.ns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess,
			[]string{"db.ns.svc.cluster.local. A 127.244.0.5", "db.ns.svc.cluster.local. A 127.244.0.7"}, nil},
		{"db-0.db.ns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"db-0.db.ns.svc.cluster.local. A 127.244.0.7"}, nil},
		{"127-244-0-5.db.ns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"127-244-0-5.db.ns.svc.cluster.local. A 127.244.0.5"}, nil},
		{"db-2.db.ns.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"x.web.ns.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"empty.ns.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"ext.ns.svc.cluster.local.", dns.TypeCNAME, dns.RcodeSuccess, []string{"ext.ns.svc.cluster.local. CNAME example.org."}, nil},
		// A target inside the cluster domain is followed.
		{"alias.ns.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess,
			[]string{"alias.ns.svc.cluster.local. CNAME web.ns.svc.cluster.local.", "web.ns.svc.cluster.local. A 127.96.0.20"}, nil},
		{"_http._tcp.web.ns.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_http._tcp.web.ns.svc.cluster.local. SRV 0 100 80 web.ns.svc.cluster.local."},
			[]string{"web.ns.svc.cluster.local. A 127.96.0.20"}},
		{"_dns._udp.web.ns.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_dns._udp.web.ns.svc.cluster.local. SRV 0 100 53 web.ns.svc.cluster.local."},
			[]string{"web.ns.svc.cluster.local. A 127.96.0.20"}},
		{"_http._udp.web.ns.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError, nil, nil},
		{"_pg._tcp.db.ns.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_pg._tcp.db.ns.svc.cluster.local. SRV 0 100 15432 127-244-0-5.db.ns.svc.cluster.local.",
				"_pg._tcp.db.ns.svc.cluster.local. SRV 0 100 15432 db-0.db.ns.svc.cluster.local."},
			[]string{"127-244-0-5.db.ns.svc.cluster.local. A 127.244.0.5", "db-0.db.ns.svc.cluster.local. A 127.244.0.7"}},
		{"127-244-0-5.ns.pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"127-244-0-5.ns.pod.cluster.local. A 127.244.0.5"}, nil},
		// Only pods that exist in that namespace (CoreDNS's "pods verified").
		{"127-244-0-6.ns.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"127-244-0-5.other.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"not-an-ip.ns.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"cluster.local.", dns.TypeSOA, dns.RcodeSuccess, []string{"cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}, nil},
	} {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			a, err := r.Lookup(dns.Question{Name: tc.name, Qtype: tc.qtype, Qclass: dns.ClassINET})
			if err != nil {
				t.Fatal(err)
			}
			if a.Rcode != tc.rcode || !slices.Equal(rrs(a.Answer), tc.answer) || !slices.Equal(rrs(a.Extra), tc.extra) {
				t.Fatalf("got %s %q extra %q; want %s %q extra %q", dns.RcodeToString[a.Rcode], rrs(a.Answer), rrs(a.Extra),
					dns.RcodeToString[tc.rcode], tc.answer, tc.extra)
			}
		})
	}
}

// serve runs s on a free UDP and TCP port of 127.0.0.1 until the test ends.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.serve(ctx, pc, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

func exchange(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	r, _, err := (&dns.Client{Net: network}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, network, err)
	}
	return r
}

// The server answers the cluster domain itself over UDP and TCP, with the
// zone's SOA on negative answers; other names go to the upstream
// nameservers, and SERVFAIL comes back when none answers.
func TestServer(t *testing.T) {
	// A stand-in for the host's nameserver.
	upMux := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg).SetReply(req)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 99)}}
		_ = w.WriteMsg(m)
	})
	upConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &dns.Server{PacketConn: upConn, Handler: upMux}
	go func() { _ = up.ActivateAndServe() }()
	t.Cleanup(func() { _ = up.Shutdown() })

	// A port nothing listens on: a nameserver that is down.
	down, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.LocalAddr().String()
	down.Close()

	upstreams := []string{downAddr, upConn.LocalAddr().String()}
	s := &Server{records: fakeRecords(t), log: testLogger(t), upstreams: func() ([]string, error) { return upstreams, nil }}
	addr := serve(t, s)

	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, addr, "web.ns.svc.cluster.local.", dns.TypeA)
		if got := rrs(r.Answer); r.Rcode != dns.RcodeSuccess || !r.Authoritative || !slices.Equal(got, []string{"web.ns.svc.cluster.local. A 127.96.0.20"}) {
			t.Errorf("%s: web: %s %q", network, dns.RcodeToString[r.Rcode], got)
		}
		r = exchange(t, network, addr, "nope.ns.svc.cluster.local.", dns.TypeA)
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s: nope: %s, authority %v; want NXDOMAIN with the SOA", network, dns.RcodeToString[r.Rcode], r.Ns)
		}
	}
	// Past the nameserver that is down, to the one that answers.
	r := exchange(t, "udp", addr, "www.example.org.", dns.TypeA)
	if got := rrs(r.Answer); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"www.example.org. A 127.0.0.99"}) {
		t.Errorf("forwarded: %s %q", dns.RcodeToString[r.Rcode], got)
	}
	// An ExternalName target outside the cluster is resolved upstream after the CNAME.
	r = exchange(t, "udp", addr, "ext.ns.svc.cluster.local.", dns.TypeA)
	if got := rrs(r.Answer); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"ext.ns.svc.cluster.local. CNAME example.org.", "example.org. A 127.0.0.99"}) {
		t.Errorf("ExternalName: %s %q", dns.RcodeToString[r.Rcode], got)
	}
	upstreams = []string{downAddr}
	if r := exchange(t, "udp", addr, "www.example.org.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("no upstream answers: %s; want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestServiceIP(t *testing.T) {
	ip, err := ServiceIP("127.96.0.0/16")
	if err != nil || ip.String() != "127.96.0.10" {
		t.Fatalf("ServiceIP(127.96.0.0/16) = %v, %v; want 127.96.0.10", ip, err)
	}
	if _, err := ServiceIP("127.96.0.0/29"); err == nil {
		t.Fatal("a /29 has no 10th address, but ServiceIP gave one")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
