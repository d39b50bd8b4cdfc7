// Package inference is the inference operator of the ML extension (outpost
// extension inference-operator): it runs OnlineDeployments, which the
// cluster agent makes of a workspace's online deployments, as apps/v1
// Deployments whose pods run the scoring server (or a custom container),
// reports each deployment's phase from its pods, and autoscales the
// deployments of scale type target_utilization from the load the router
// (azureml-fe) reports.
package inference

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/inference/v1alpha1"
	"outpost.dev/outpost/internal/extension"
	"outpost.dev/outpost/internal/training"
)

// Options configure Run.
type Options struct {
	// Image is the outpost image, which the deployments' install and fetch
	// init containers run (the operator's own image, from $OUTPOST_IMAGE).
	Image string
	// WrapperKey is the sha256 (hex) of that image's binary, which names
	// the nodes' copy of it (internal/wrapper); "" when the operator runs
	// from that image, as in the cluster. Tests that run the operator
	// in-process give the cluster's binary's.
	WrapperKey string
	// RouterNamespace is where the router's pods run (azureml), whose load
	// the autoscaler reads.
	RouterNamespace string
	// ProbeAddr is the address of /healthz and /readyz, e.g.
	// "10.1.0.7:8081"; "" or "0" serves none.
	ProbeAddr string
	// Logger receives the operator's log; nil discards it.
	Logger *slog.Logger
}

// Scheme returns a scheme with the types the operator reads and writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, amlarcv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ours selects the objects the operator made: Deployments and their pods
// carry the name of their OnlineDeployment.
func ours() labels.Selector {
	req, err := labels.NewRequirement(LabelOnlineDeployment, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid key
	}
	return labels.NewSelector().Add(*req)
}

// Run runs the operator until ctx ends. Both probes succeed once the caches
// of OnlineDeployments, their Deployments and pods, and InstanceTypes are
// filled.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	if o.Image == "" {
		return errors.New("inference operator: no outpost image for the deployments' install container (set OUTPOST_IMAGE)")
	}
	if o.RouterNamespace == "" {
		o.RouterNamespace = extension.Namespace
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	log := logr.Discard()
	if o.Logger != nil {
		log = logr.FromSlogHandler(o.Logger.Handler())
	}
	ctrllog.SetLogger(log)
	probe := o.ProbeAddr
	if probe == "" {
		probe = "0"
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme: scheme,
		Logger: log,
		// One replica, no lease: a restarted operator works at once. Its
		// objects have fixed names, so a second one could not double a
		// deployment; it would only scale down twice as fast.
		LeaderElection:         false,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: probe,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			// Only what the operator made: other pods and Deployments of
			// the cluster are none of its business.
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Pod{}:        {Label: ours()},
				&appsv1.Deployment{}: {Label: ours()},
			},
		},
		Controller: config.Controller{SkipNameValidation: new(true)},
	})
	if err != nil {
		return fmt.Errorf("inference operator: %w", err)
	}
	events := mgr.GetEventRecorderFor("inference-operator")
	scaler := &autoscaler{
		client: mgr.GetClient(), reader: mgr.GetAPIReader(), namespace: o.RouterNamespace, port: extension.RouterAdminPort,
		http: &http.Client{}, log: log.WithName("autoscaler"), events: events, now: time.Now, tick: time.Second,
		state: map[types.NamespacedName]*scaleState{},
	}
	r := &reconciler{client: mgr.GetClient(), reader: mgr.GetAPIReader(), image: o.Image, wrapperKey: o.WrapperKey, log: log, events: events, now: time.Now, scaler: scaler}
	if err := r.setup(mgr); err != nil {
		return err
	}

	var synced atomic.Bool
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for _, obj := range []client.Object{&v1alpha1.OnlineDeployment{}, &appsv1.Deployment{}, &corev1.Pod{}, &amlarcv1alpha1.InstanceType{}} {
			if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
				return fmt.Errorf("informer for %T: %w", obj, err)
			}
		}
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
			log.Info("caches synced; running deployments")
		}
		return nil
	}))
	if err != nil {
		return err
	}
	// The autoscaler reads the caches, so it starts with them.
	if err := mgr.Add(scaler); err != nil {
		return err
	}
	check := func(*http.Request) error {
		if !synced.Load() {
			return errors.New("caches not synced yet")
		}
		return nil
	}
	if err := mgr.AddHealthzCheck("caches", check); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", check); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

func (r *reconciler) setup(mgr ctrl.Manager) error {
	return builder.ControllerManagedBy(mgr).
		Named("onlinedeployment").
		For(&v1alpha1.OnlineDeployment{}).
		Owns(&appsv1.Deployment{}).
		// A pod's change is its deployment's: they carry its name.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			name := o.GetLabels()[LabelOnlineDeployment]
			if name == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		})).
		// An instance type that appears or changes may let a failed
		// deployment run, or change the pods of a running one.
		Watches(&amlarcv1alpha1.InstanceType{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.usersOf(ctx, o.GetName())
		})).
		Complete(r)
}

// usersOf are the deployments of instance type name.
func (r *reconciler) usersOf(ctx context.Context, name string) []reconcile.Request {
	var list v1alpha1.OnlineDeploymentList
	if err := r.client.List(ctx, &list); err != nil {
		// The cache answers lists from memory; its only error is a type it
		// does not know, which setup rules out.
		r.log.Error(err, "list deployments")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		od := &list.Items[i]
		it := od.Spec.InstanceType
		if it == "" {
			it = training.DefaultInstanceType
		}
		if it == name {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(od)})
		}
	}
	return out
}
