package kubesource

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/router"
)

// Options of the router component.
type Options struct {
	// Namespace is the router's own (the ML extension's, azureml): its
	// ConfigMap, TLS Secret and pods are there.
	Namespace string
	// PodName is this replica's pod, as /load names it.
	PodName string
	// Address is the address the ports listen on ("": all).
	Address                        string
	HTTPPort, HTTPSPort, AdminPort int
	MaxBodyBytes                   int64
	// ShutdownDelay is how long a replica told to stop keeps serving,
	// unready, so that the Service stops sending it new connections first.
	ShutdownDelay time.Duration
	Log           *slog.Logger
}

// mode is how the ConfigMap says to serve.
type mode struct {
	https     bool
	tlsSecret string
}

func readMode(cm *corev1.ConfigMap) (mode, error) {
	var m mode
	v := cm.Data[extension.RouterConfigHTTPS]
	https, err := strconv.ParseBool(v)
	if err != nil {
		return m, fmt.Errorf("ConfigMap %s/%s: %s is %q, not true or false", cm.Namespace, cm.Name, extension.RouterConfigHTTPS, v)
	}
	m.https = https
	if https {
		m.tlsSecret = cm.Data[extension.RouterConfigTLSSecret]
		if m.tlsSecret == "" {
			return m, fmt.Errorf("ConfigMap %s/%s: https is true but %s names no Secret", cm.Namespace, cm.Name, extension.RouterConfigTLSSecret)
		}
	}
	return m, nil
}

// errModeChanged ends Run so that the replica restarts in the new mode.
var errModeChanged = errors.New("the router's ConfigMap changed how it serves")

// Run serves the router until ctx ends (then drains and returns nil) or
// the ConfigMap's https or tlsSecret changes (then drains and returns nil
// too: the container restarts, as a rollout of the router would).
func Run(ctx context.Context, rc *rest.Config, o Options) error {
	log := o.Log
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	cm, err := kube.CoreV1().ConfigMaps(o.Namespace).Get(ctx, extension.RouterConfigName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the router's settings, ConfigMap %s/%s (the ML extension makes it): %w", o.Namespace, extension.RouterConfigName, err)
	}
	m, err := readMode(cm)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Request lines go out in batches: a write per request would cost a
	// busy router more than its routing does.
	access := router.NewLogWriter(os.Stderr, 200*time.Millisecond)
	defer access.Close()
	rt := router.New(router.Options{
		Replica:      o.PodName,
		MaxBodyBytes: o.MaxBodyBytes,
		RequestLog:   access,
		Registerer:   reg,
	})
	src := NewSource(kube, dyn, rt, o.Namespace, log)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var cert router.Certificate
	watched, err := watchMode(ctx, kube, o.Namespace, m, &cert, log, func() { cancel(errModeChanged) })
	if err != nil {
		return err
	}
	var draining atomic.Bool
	ready := func() error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		if !watched() {
			return errors.New("the router's ConfigMap and TLS Secret are not listed yet")
		}
		if m.https && !cert.Loaded() {
			return fmt.Errorf("no valid certificate in Secret %s/%s (tls.crt, tls.key) yet", o.Namespace, m.tlsSecret)
		}
		return src.Ready()
	}

	listen := func(port int) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(port)))
	}
	adminL, err := listen(o.AdminPort)
	if err != nil {
		return fmt.Errorf("admin port: %w", err)
	}
	port := o.HTTPPort
	if m.https {
		port = o.HTTPSPort
	}
	l, err := listen(port)
	if err != nil {
		adminL.Close()
		return err
	}
	admin := &http.Server{Handler: router.AdminHandler(rt, reg, ready), ReadHeaderTimeout: 10 * time.Second}
	srv := router.NewServer(rt)
	srv.Logger = slog.NewLogLogger(log.Handler(), slog.LevelWarn)

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- src.Run(ctx) })
	wg.Go(func() { errs <- serveErr(admin.Serve(adminL)) })
	wg.Go(func() {
		if m.https {
			errs <- srv.Serve(tls.NewListener(l, cert.TLSConfig()))
		} else {
			errs <- srv.Serve(l)
		}
	})
	scheme := map[bool]string{false: "http", true: "https"}[m.https]
	log.Info("serving", "scheme", scheme, "addr", l.Addr().String(), "admin", adminL.Addr().String(), "replica", o.PodName)

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-errs:
	}
	draining.Store(true)
	if failed == nil && context.Cause(ctx) != errModeChanged && o.ShutdownDelay > 0 {
		log.Info("stopping: unready, still serving", "for", o.ShutdownDelay)
		time.Sleep(o.ShutdownDelay)
	}
	if errors.Is(context.Cause(ctx), errModeChanged) {
		log.Info("the ConfigMap changed https or tlsSecret: restarting to serve the new way")
	}
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		log.Warn("requests cut short by the shutdown", "err", err)
	}
	admin.Shutdown(sctx)
	cancel(nil)
	wg.Wait()
	return failed
}

func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// watchMode watches the router's ConfigMap (calling changed when its mode
// differs from m) and, with HTTPS, its TLS Secret (loading each version
// into cert). It returns whether both were listed.
func watchMode(ctx context.Context, kube kubernetes.Interface, namespace string, m mode, cert *router.Certificate, log *slog.Logger, changed func()) (func() bool, error) {
	named := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name })
	}
	cmF := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace), named(extension.RouterConfigName))
	cmInf := cmF.Core().V1().ConfigMaps().Informer()
	onCM := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		now, err := readMode(cm)
		if err != nil {
			log.Error("the router's ConfigMap changed to something it cannot serve by; keeping the old mode", "err", err)
			return
		}
		if now != m {
			changed()
		}
	}
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onCM, UpdateFunc: func(_, o any) { onCM(o) }}); err != nil {
		return nil, err
	}
	synced := []cache.InformerSynced{cmInf.HasSynced}
	cmF.Start(ctx.Done())
	context.AfterFunc(ctx, cmF.Shutdown)
	if m.https {
		secF := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace), named(m.tlsSecret))
		secInf := secF.Core().V1().Secrets().Informer()
		onSecret := func(obj any) {
			s, ok := obj.(*corev1.Secret)
			if !ok {
				return
			}
			if err := cert.Set(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
				log.Error("Secret "+namespace+"/"+m.tlsSecret+" holds no usable certificate; keeping the one served", "err", err)
				return
			}
			log.Info("serving the certificate of Secret "+namespace+"/"+m.tlsSecret, "resourceVersion", s.ResourceVersion)
		}
		if _, err := secInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    onSecret,
			UpdateFunc: func(_, o any) { onSecret(o) },
			DeleteFunc: func(any) {
				log.Warn("Secret " + namespace + "/" + m.tlsSecret + " was deleted; serving the certificate loaded last")
			},
		}); err != nil {
			return nil, err
		}
		synced = append(synced, secInf.HasSynced)
		secF.Start(ctx.Done())
		context.AfterFunc(ctx, secF.Shutdown)
	}
	return func() bool {
		for _, s := range synced {
			if !s() {
				return false
			}
		}
		return true
	}, nil
}
