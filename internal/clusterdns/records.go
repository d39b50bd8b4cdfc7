// Package clusterdns is the local cluster's DNS server: it answers for the
// cluster domain from Services, EndpointSlices and Pods as CoreDNS's
// kubernetes plugin does, and forwards every other name to the host's
// nameservers.
package clusterdns

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/miekg/dns"

	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// ttl is CoreDNS's default for the kubernetes plugin: short, as records
// follow pods that come and go.
const ttl = 5

// PodIPIndex names the index of the pod informer Records reads: namespace/IP.
const PodIPIndex = "namespace/podIP"

// PodIPIndexFunc indexes pods by namespace/IP, for pod records.
func PodIPIndexFunc(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var keys []string
	for _, ip := range p.Status.PodIPs {
		keys = append(keys, p.Namespace+"/"+ip.IP)
	}
	if len(keys) == 0 && p.Status.PodIP != "" {
		keys = append(keys, p.Namespace+"/"+p.Status.PodIP)
	}
	return keys, nil
}

// Records answers questions about the cluster domain from informer caches.
type Records struct {
	// Domain is the cluster domain without dots at either end: cluster.local.
	Domain   string
	Services corelisters.ServiceLister
	Slices   discoverylisters.EndpointSliceLister
	// Pods is indexed with PodIPIndexFunc under PodIPIndex.
	Pods cache.Indexer
}

// Answer is what Records knows of one question.
type Answer struct {
	Rcode  int      // dns.RcodeSuccess or dns.RcodeNameError
	Answer []dns.RR // empty with RcodeSuccess: the name exists without records of that type
	Extra  []dns.RR
	// External is an ExternalName Service's target outside the cluster
	// domain, for the server to resolve upstream after the CNAME.
	External string
}

// InZone tells whether name (fully qualified) lies in the cluster domain.
func (r *Records) InZone(name string) bool {
	return dns.IsSubDomain(r.zone(), strings.ToLower(name))
}

func (r *Records) zone() string { return dns.Fqdn(r.Domain) }

// SOA is the zone's start of authority, sent with negative answers so that
// resolvers cache them only briefly.
func (r *Records) SOA() dns.RR {
	z := r.zone()
	return &dns.SOA{Hdr: dns.RR_Header{Name: z, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns.dns." + z, Mbox: "hostmaster." + z, Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl}
}

// Lookup answers a question whose name is in the cluster domain.
func (r *Records) Lookup(q dns.Question) (Answer, error) {
	name := strings.ToLower(dns.Fqdn(q.Name))
	rel := strings.TrimSuffix(strings.TrimSuffix(name, r.zone()), ".")
	var labels []string
	if rel != "" {
		labels = dns.SplitDomainName(rel)
	}
	// Read from the right: <...>.<namespace>.<svc|pod>.
	n := len(labels)
	switch {
	case n == 0:
		if q.Qtype == dns.TypeSOA {
			return Answer{Answer: []dns.RR{r.SOA()}}, nil
		}
		return Answer{}, nil
	case labels[n-1] == "svc":
		return r.service(name, labels[:n-1], q.Qtype)
	case labels[n-1] == "pod":
		return r.pod(name, labels[:n-1], q.Qtype)
	}
	return Answer{Rcode: dns.RcodeNameError}, nil
}

func nxdomain() (Answer, error) { return Answer{Rcode: dns.RcodeNameError}, nil }

// service answers <svc>.<ns>.svc, <endpoint>.<svc>.<ns>.svc and
// _<port>._<proto>.<svc>.<ns>.svc; labels are those left of "svc".
func (r *Records) service(name string, labels []string, qtype uint16) (Answer, error) {
	n := len(labels)
	if n <= 1 {
		// svc.<zone> and <ns>.svc.<zone> exist as names, without records.
		return Answer{}, nil
	}
	ns, svcName := labels[n-1], labels[n-2]
	svc, err := r.Services.Services(ns).Get(svcName)
	if apierrors.IsNotFound(err) {
		return nxdomain()
	}
	if err != nil {
		return Answer{}, err
	}
	switch n {
	case 2:
		return r.serviceRecords(name, svc, qtype)
	case 3:
		return r.endpointRecords(name, svc, labels[0], qtype)
	case 4:
		if !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
			return nxdomain()
		}
		return r.portRecords(name, svc, labels[0][1:], labels[1][1:], qtype)
	}
	return nxdomain()
}

// serviceRecords: a ClusterIP Service's IPs, a headless Service's ready
// endpoints, an ExternalName Service's CNAME.
func (r *Records) serviceRecords(name string, svc *corev1.Service, qtype uint16) (Answer, error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		target := dns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
		a := Answer{Answer: []dns.RR{&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: target}}}
		if qtype == dns.TypeCNAME {
			return a, nil
		}
		if r.InZone(target) {
			// Followed here, as CoreDNS does for targets in its own zone.
			more, err := r.Lookup(dns.Question{Name: target, Qtype: qtype, Qclass: dns.ClassINET})
			if err != nil {
				return Answer{}, err
			}
			a.Answer = append(a.Answer, more.Answer...)
			a.Extra = more.Extra
			return a, nil
		}
		a.External = target
		return a, nil
	}
	if isHeadless(svc) {
		eps, err := r.endpoints(svc)
		if err != nil {
			return Answer{}, err
		}
		if len(eps) == 0 {
			// As CoreDNS: a headless Service without ready endpoints has no name.
			return nxdomain()
		}
		var a Answer
		for _, ep := range eps {
			if rr := addrRR(name, ep.addr, qtype); rr != nil {
				a.Answer = append(a.Answer, rr)
			}
		}
		return a, nil
	}
	var a Answer
	for _, ip := range clusterIPs(svc) {
		if rr := addrRR(name, ip, qtype); rr != nil {
			a.Answer = append(a.Answer, rr)
		}
	}
	return a, nil
}

// endpointRecords answers <endpoint>.<svc>.<ns>.svc, where endpoint is an
// endpoint's hostname or its dashed IP.
func (r *Records) endpointRecords(name string, svc *corev1.Service, label string, qtype uint16) (Answer, error) {
	if !isHeadless(svc) {
		return nxdomain()
	}
	eps, err := r.endpoints(svc)
	if err != nil {
		return Answer{}, err
	}
	found := false
	var a Answer
	for _, ep := range eps {
		if ep.label() != label {
			continue
		}
		found = true
		if rr := addrRR(name, ep.addr, qtype); rr != nil {
			a.Answer = append(a.Answer, rr)
		}
	}
	if !found {
		return nxdomain()
	}
	return a, nil
}

// portRecords answers SRV questions for a named port: the Service itself as
// target for a ClusterIP Service, each ready endpoint for a headless one.
func (r *Records) portRecords(name string, svc *corev1.Service, port, proto string, qtype uint16) (Answer, error) {
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name != "" && strings.EqualFold(p.Name, port) && strings.EqualFold(string(protocol(p.Protocol)), proto) {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nxdomain()
	}
	svcName := dns.Fqdn(svc.Name + "." + svc.Namespace + ".svc." + r.Domain)
	if !isHeadless(svc) {
		if len(clusterIPs(svc)) == 0 {
			return nxdomain()
		}
		var a Answer
		if qtype == dns.TypeSRV {
			a.Answer = []dns.RR{&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(sp.Port), Target: svcName}}
			for _, ip := range clusterIPs(svc) {
				a.Extra = append(a.Extra, addrRR(svcName, ip, 0))
			}
		}
		return a, nil
	}
	eps, err := r.endpoints(svc)
	if err != nil {
		return Answer{}, err
	}
	var a Answer
	for _, ep := range eps {
		epPort, ok := ep.ports[portKey{sp.Name, protocol(sp.Protocol)}]
		if !ok {
			continue
		}
		if qtype == dns.TypeSRV {
			target := ep.label() + "." + svcName
			a.Answer = append(a.Answer, &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(epPort), Target: target})
			a.Extra = append(a.Extra, addrRR(target, ep.addr, 0))
		}
	}
	if qtype == dns.TypeSRV && len(a.Answer) == 0 {
		return nxdomain()
	}
	return a, nil
}

// pod answers <a-b-c-d>.<ns>.pod for a pod of that namespace with that IP
// (CoreDNS's "pods verified").
func (r *Records) pod(name string, labels []string, qtype uint16) (Answer, error) {
	switch len(labels) {
	case 0, 1:
		return Answer{}, nil
	case 2:
	default:
		return nxdomain()
	}
	ip, ok := undash(labels[0])
	if !ok {
		return nxdomain()
	}
	pods, err := r.Pods.ByIndex(PodIPIndex, labels[1]+"/"+ip.String())
	if err != nil {
		return Answer{}, err
	}
	if len(pods) == 0 {
		return nxdomain()
	}
	var a Answer
	if rr := addrRR(name, ip, qtype); rr != nil {
		a.Answer = append(a.Answer, rr)
	}
	return a, nil
}

type portKey struct {
	name  string
	proto corev1.Protocol
}

type endpoint struct {
	addr     netip.Addr
	hostname string
	ports    map[portKey]int32
}

// label is how an endpoint is named under its Service: its hostname, else
// its address with dashes.
func (e endpoint) label() string {
	if e.hostname != "" {
		return strings.ToLower(e.hostname)
	}
	return strings.NewReplacer(".", "-", ":", "-").Replace(e.addr.String())
}

// endpoints lists a Service's ready endpoint addresses, one entry per
// address, sorted and without the duplicates that slices being rebalanced
// can hold.
func (r *Records) endpoints(svc *corev1.Service) ([]endpoint, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	list, err := r.Slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var eps []endpoint
	for _, s := range list {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ports := map[portKey]int32{}
		for _, p := range s.Ports {
			if p.Port != nil {
				ports[portKey{ptrOr(p.Name, ""), protocol(ptrOr(p.Protocol, ""))}] = *p.Port
			}
		}
		for _, ep := range s.Endpoints {
			// Ready is nil when unknown, which consumers take as ready; the
			// controller sets it for publishNotReadyAddresses Services too.
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				e := endpoint{addr: addr.Unmap(), hostname: ptrOr(ep.Hostname, ""), ports: ports}
				key := e.label() + "/" + e.addr.String()
				if seen[key] {
					continue
				}
				seen[key] = true
				eps = append(eps, e)
			}
		}
	}
	slices.SortFunc(eps, func(a, b endpoint) int { return a.addr.Compare(b.addr) })
	return eps, nil
}

func isHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone
}

func clusterIPs(svc *corev1.Service) []netip.Addr {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// undash reads a pod record's label: 127-244-0-5 (IPv4) or an IPv6 address
// with dashes for colons.
func undash(label string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil && a.Is4() {
		return a, true
	}
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err == nil && a.Is6() {
		return a, true
	}
	return netip.Addr{}, false
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// addrRR is ip's A or AAAA record when qtype asks for that family (qtype 0
// asks for either); nil otherwise.
func addrRR(name string, ip netip.Addr, qtype uint16) dns.RR {
	switch {
	case ip.Is4() && (qtype == dns.TypeA || qtype == 0):
		return &dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()}
	case ip.Is6() && (qtype == dns.TypeAAAA || qtype == 0):
		return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()}
	}
	return nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
