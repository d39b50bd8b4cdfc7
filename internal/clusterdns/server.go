package clusterdns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/miekg/dns"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// forwardTimeout bounds one try at one upstream nameserver; glibc gives up on
// a server after 5 s, so a client still hears SERVFAIL from us first.
const forwardTimeout = 2 * time.Second

// Options configures the server Start runs.
type Options struct {
	// Addr is the ip:port served over UDP and TCP.
	Addr string
	// Domain is the cluster domain; "" means cluster.local.
	Domain string
	// ResolvConf names the resolver configuration whose nameservers answer
	// every name outside the cluster domain; "" means /etc/resolv.conf. It is
	// read for each such question, so edits apply at once.
	ResolvConf string
	Logger     *slog.Logger
}

// Server answers DNS questions: from Records for the cluster domain, from
// the upstream nameservers for everything else.
type Server struct {
	records   *Records
	addr      string
	upstreams func() ([]string, error) // host:port of each, in order
	log       *slog.Logger
}

// Start binds opts.Addr (UDP and TCP), fills the caches it answers from and
// serves until ctx ends. It returns once the server answers, or with the
// reason it cannot.
func Start(ctx context.Context, client kubernetes.Interface, opts Options) error {
	log := cmp.Or(opts.Logger, slog.Default())
	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{PodIPIndex: PodIPIndexFunc}); err != nil {
		return err
	}
	records := &Records{
		Domain:   cmp.Or(opts.Domain, "cluster.local"),
		Services: factory.Core().V1().Services().Lister(),
		Slices:   factory.Discovery().V1().EndpointSlices().Lister(),
		Pods:     podInformer.GetIndexer(),
	}
	resolvConf := cmp.Or(opts.ResolvConf, "/etc/resolv.conf")
	s := &Server{records: records, addr: opts.Addr, log: log, upstreams: func() ([]string, error) {
		return nameservers(resolvConf)
	}}
	udp, tcp, err := listen(ctx, opts.Addr)
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			udp.Close()
			tcp.Close()
			factory.Shutdown()
			return fmt.Errorf("cluster DNS: the %v cache did not fill: %w", typ, context.Cause(ctx))
		}
	}
	go func() {
		defer factory.Shutdown()
		s.serve(ctx, udp, tcp)
	}()
	log.Info("cluster DNS serving", "address", opts.Addr, "domain", records.Domain, "upstreams from", resolvConf)
	return nil
}

func listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	udp, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster DNS: %w", err)
	}
	tcp, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		udp.Close()
		return nil, nil, fmt.Errorf("cluster DNS: %w", err)
	}
	return udp, tcp, nil
}

// serve answers on udp and tcp until ctx ends, then closes both.
func (s *Server) serve(ctx context.Context, udp net.PacketConn, tcp net.Listener) {
	servers := []*dns.Server{{PacketConn: udp, Handler: s}, {Listener: tcp, Handler: s}}
	done := make(chan struct{}, len(servers))
	for _, srv := range servers {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				s.log.Error("cluster DNS stopped serving", "address", s.addr, "err", err)
			}
		}()
	}
	<-ctx.Done()
	for _, srv := range servers {
		if err := srv.Shutdown(); err != nil {
			s.log.Warn("cluster DNS shutdown", "err", err)
		}
	}
	for range servers {
		<-done
	}
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	resp := s.answer(req, udp)
	if udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		// Sets TC when it had to cut, so the client asks again over TCP.
		resp.Truncate(size)
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("cluster DNS: write answer", "client", w.RemoteAddr(), "err", err)
	}
}

func (s *Server) answer(req *dns.Msg, udp bool) *dns.Msg {
	m := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		return m.SetRcode(req, dns.RcodeFormatError)
	}
	q := req.Question[0]
	if !s.records.InZone(q.Name) {
		return s.forward(req, udp)
	}
	a, err := s.records.Lookup(q)
	if err != nil {
		s.log.Error("cluster DNS: lookup", "name", q.Name, "err", err)
		return m.SetRcode(req, dns.RcodeServerFailure)
	}
	m.SetRcode(req, a.Rcode)
	m.Authoritative, m.RecursionAvailable = true, true
	m.Answer, m.Extra = a.Answer, a.Extra
	if a.External != "" {
		// An ExternalName's target: resolved upstream, as CoreDNS does, so
		// the client gets addresses with the CNAME.
		up := new(dns.Msg).SetQuestion(a.External, q.Qtype)
		up.RecursionDesired = true
		if r := s.forward(up, udp); r.Rcode == dns.RcodeSuccess {
			m.Answer = append(m.Answer, r.Answer...)
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{s.records.SOA()}
	}
	return m
}

// forward asks the upstream nameservers in turn, over the transport the
// query came by, and relays the first answer; SERVFAIL when none answers.
func (s *Server) forward(req *dns.Msg, udp bool) *dns.Msg {
	fail := new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	fail.RecursionAvailable = true
	servers, err := s.upstreams()
	if err != nil {
		s.log.Warn("cluster DNS: no upstream nameservers", "err", err)
		return fail
	}
	c := &dns.Client{Net: "tcp", Timeout: forwardTimeout}
	if udp {
		c.Net = "udp"
	}
	var errs []error
	for _, up := range servers {
		if up == s.addr {
			continue // never ask ourselves: that would loop
		}
		r, _, err := c.Exchange(req, up)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Id = req.Id
		return r
	}
	s.log.Debug("cluster DNS: no upstream answered", "name", req.Question[0].Name, "err", errors.Join(errs...))
	return fail
}

// nameservers reads the nameserver lines of a resolver configuration as
// host:port; a file naming none means the local one, as for glibc.
func nameservers(resolvConf string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if errors.Is(err, os.ErrNotExist) {
		return []string{"127.0.0.1:53"}, nil
	}
	if err != nil {
		return nil, err
	}
	if len(cc.Servers) == 0 {
		return []string{"127.0.0.1:53"}, nil
	}
	var out []string
	for _, ns := range cc.Servers {
		out = append(out, net.JoinHostPort(ns, cc.Port))
	}
	return out, nil
}

// ServiceIP is the cluster DNS address in a service CIDR: its 10th address,
// which kubeadm clusters give kube-dns too. The apiserver hands out cluster
// IPs from the top of the range first and keeps the bottom for addresses
// asked for by value, so no Service created meanwhile takes it in practice;
// the kube-dns Service then holds it for good.
func ServiceIP(serviceCIDR string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(serviceCIDR)
	if err != nil {
		return netip.Addr{}, err
	}
	ip := p.Masked().Addr()
	for range 10 {
		ip = ip.Next()
	}
	if !p.Contains(ip) {
		return netip.Addr{}, fmt.Errorf("service CIDR %s has no 10th address for cluster DNS", serviceCIDR)
	}
	return ip, nil
}
