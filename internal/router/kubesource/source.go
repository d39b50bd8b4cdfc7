// Package kubesource runs the inference router azureml-fe in a cluster: it
// watches the OnlineEndpoints and OnlineDeployments, the endpoints' key
// Secrets, the deployments' pods and the router's own pods, builds the
// router's table from them on every change, and serves the router (HTTP or
// HTTPS as ConfigMap azureml-fe-config says) and its admin port.
package kubesource

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"outpost.dev/outpost/api"
	inferencev1 "outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/router"
)

// RouterLabel selects the router's own pods (app=azureml-fe) in its
// namespace; the ready ones share each instance's concurrency.
const RouterLabel = "app=azureml-fe"

// debounce gathers the events of one change (a deployment's rollout moves
// several pods) into one table.
const debounce = 50 * time.Millisecond

var (
	endpointsGVR   = inferencev1.GroupVersion.WithResource(inferencev1.EndpointResource)
	deploymentsGVR = inferencev1.GroupVersion.WithResource(inferencev1.DeploymentResource)
)

// Source keeps a Router's table in step with the cluster.
type Source struct {
	rt        *router.Router
	namespace string
	log       *slog.Logger

	dyn      dynamicinformer.DynamicSharedInformerFactory
	keys     informers.SharedInformerFactory
	pods     informers.SharedInformerFactory
	own      informers.SharedInformerFactory
	synced   []cache.InformerSynced
	kick     chan struct{}
	builtOne chan struct{}
}

// NewSource returns a Source for rt; namespace is the router's own.
func NewSource(kube kubernetes.Interface, dyn dynamic.Interface, rt *router.Router, namespace string, log *slog.Logger) *Source {
	label := func(sel string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel })
	}
	return &Source{
		rt: rt, namespace: namespace, log: log,
		dyn:      dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		keys:     informers.NewSharedInformerFactoryWithOptions(kube, 0, label(inferencev1.LabelEndpoint)),
		pods:     informers.NewSharedInformerFactoryWithOptions(kube, 0, label(inferencev1.LabelDeployment)),
		own:      informers.NewSharedInformerFactoryWithOptions(kube, 0, label(RouterLabel), informers.WithNamespace(namespace)),
		kick:     make(chan struct{}, 1),
		builtOne: make(chan struct{}),
	}
}

// Run watches until ctx ends, building a table after every change.
func (s *Source) Run(ctx context.Context) error {
	poke := func(any) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}
	for _, inf := range []cache.SharedIndexInformer{
		s.dyn.ForResource(endpointsGVR).Informer(),
		s.dyn.ForResource(deploymentsGVR).Informer(),
		s.keys.Core().V1().Secrets().Informer(),
		s.pods.Core().V1().Pods().Informer(),
		s.own.Core().V1().Pods().Informer(),
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
		s.synced = append(s.synced, inf.HasSynced)
	}
	s.dyn.Start(ctx.Done())
	s.keys.Start(ctx.Done())
	s.pods.Start(ctx.Done())
	s.own.Start(ctx.Done())
	defer func() {
		s.dyn.Shutdown()
		s.keys.Shutdown()
		s.pods.Shutdown()
		s.own.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return nil // ctx ended
	}
	built := false
	for {
		t, err := s.Build()
		if err != nil {
			s.log.Error("build the routing table", "err", err)
		} else if err := s.rt.SetTable(t); err != nil {
			s.log.Error("install the routing table", "err", err)
		} else if !built {
			built = true
			close(s.builtOne)
			s.log.Info("routing", "endpoints", len(t.Endpoints), "replicas", t.Replicas)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(debounce):
		}
	}
}

// Ready reports whether the router routes by the cluster's state: the
// informers listed everything once and a table was built from them.
func (s *Source) Ready() error {
	select {
	case <-s.builtOne:
		return nil
	default:
		return fmt.Errorf("the router has not listed the cluster's endpoints, deployments and pods yet")
	}
}

// Build makes a table of what the informers hold.
func (s *Source) Build() (*router.Table, error) {
	eps, err := s.dyn.ForResource(endpointsGVR).Lister().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	deps, err := s.dyn.ForResource(deploymentsGVR).Lister().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	secrets := s.keys.Core().V1().Secrets().Lister()
	pods, err := s.pods.Core().V1().Pods().Lister().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	own, err := s.own.Core().V1().Pods().Lister().List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return buildTable(s.log, eps, deps, secrets, pods, own)
}

// buildTable is Build's pure part.
func buildTable(log *slog.Logger, epObjs, depObjs []runtime.Object, secrets corelisters.SecretLister, pods, own []*corev1.Pod) (*router.Table, error) {
	t := &router.Table{Endpoints: map[string]*router.Endpoint{}}
	for _, p := range own {
		if podReady(p) {
			t.Replicas++
		}
	}

	var endpoints []*inferencev1.OnlineEndpoint
	for _, o := range epObjs {
		var e inferencev1.OnlineEndpoint
		if err := fromUnstructured(o, &e); err != nil {
			log.Warn("unreadable OnlineEndpoint", "err", err)
			continue
		}
		endpoints = append(endpoints, &e)
	}
	// Names are unique in a cluster's endpoints; should two namespaces
	// claim one, the older keeps it rather than the last one listed.
	slices.SortFunc(endpoints, func(a, b *inferencev1.OnlineEndpoint) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, cr := range endpoints {
		name := cmp.Or(cr.Spec.Name, cr.Name)
		if had := t.Endpoints[name]; had != nil {
			log.Warn("two OnlineEndpoints of one name: routing to the older", "endpoint", name, "routed", had.Namespace, "ignored", cr.Namespace)
			continue
		}
		e := &router.Endpoint{
			Name: name, Namespace: cr.Namespace,
			AuthMode:    strings.ToLower(cmp.Or(cr.Spec.AuthMode, api.AuthModeKey)),
			KeysSource:  cr.Namespace + "/" + cr.Spec.SecretName,
			Traffic:     map[string]int{},
			Deployments: map[string]*router.Deployment{},
		}
		for d, w := range cr.Spec.Traffic {
			e.Traffic[d] = int(max(w, 0))
		}
		if sec, err := secrets.Secrets(cr.Namespace).Get(cr.Spec.SecretName); err == nil {
			e.Keys = []string{string(sec.Data[inferencev1.SecretPrimaryKey]), string(sec.Data[inferencev1.SecretSecondaryKey])}
			e.TokenKey = string(sec.Data[inferencev1.SecretTokenKey])
		}
		t.Endpoints[name] = e
	}

	type podKey struct{ namespace, endpoint, deployment string }
	ready := map[podKey][]*corev1.Pod{}
	for _, p := range pods {
		if podReady(p) {
			k := podKey{p.Namespace, p.Labels[inferencev1.LabelEndpoint], p.Labels[inferencev1.LabelDeployment]}
			ready[k] = append(ready[k], p)
		}
	}
	for _, o := range depObjs {
		var cr inferencev1.OnlineDeployment
		if err := fromUnstructured(o, &cr); err != nil {
			log.Warn("unreadable OnlineDeployment", "err", err)
			continue
		}
		e := t.Endpoints[cr.Spec.Endpoint]
		if e == nil || e.Namespace != cr.Namespace {
			continue // its endpoint is not (or no longer) on the cluster
		}
		name := cmp.Or(cr.Spec.Name, cr.Name)
		port, path := int32(inferencev1.ScoringPort), router.DefaultScoringPath
		if ic := cr.Spec.InferenceConfig; ic != nil {
			port = cmp.Or(ic.Scoring.Port, port)
			path = cmp.Or(ic.Scoring.Path, path)
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		d := &router.Deployment{
			Name:          name,
			Timeout:       time.Duration(cr.Spec.Request.TimeoutMS) * time.Millisecond,
			MaxConcurrent: int(cr.Spec.Request.MaxConcurrentPerInstance),
			MaxQueueWait:  time.Duration(cr.Spec.Request.MaxQueueWaitMS) * time.Millisecond,
		}
		ps := ready[podKey{cr.Namespace, e.Name, name}]
		slices.SortFunc(ps, func(a, b *corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
		for _, p := range ps {
			d.Instances = append(d.Instances, router.Instance{
				Name: p.Name, Addr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))), ScoringPath: path,
			})
		}
		e.Deployments[name] = d
	}
	return t, t.Validate()
}

// podReady: Ready, with an address, and not on its way out (a deleted
// pod's server may stop at any moment).
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func fromUnstructured(o runtime.Object, into any) error {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("%T is not unstructured", o)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("%s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return nil
}
