// Package training is the training operator of the ML extension (outpost
// extension training-operator): it runs TrainingJobs, which the cluster
// agent makes of workspace jobs. It admits a job when every one of its pods
// has a node with room (all or nothing, first come first served among the
// jobs that fit), creates the pods on those nodes with the layout the job's
// wrapper relies on, and reports the job's phase from its pods.
package training

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	"outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/kubenode"
	"outpost.dev/outpost/internal/wrapper"
)

// Options configure Run.
type Options struct {
	// Image is the outpost image, which the job pods' install init
	// container runs (the operator's own image, from $OUTPOST_IMAGE).
	Image string
	// WrapperKey is the sha256 (hex) of that image's binary, which names
	// the nodes' copy of it (see package wrapper); "" means the running
	// binary's, right when the operator runs from Image.
	WrapperKey string
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

// Run runs the operator until ctx ends. Both probes succeed once the caches
// of TrainingJobs, pods, nodes and InstanceTypes are filled, that is once
// the operator can admit jobs.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	if o.Image == "" {
		return errors.New("training operator: no outpost image for the jobs' install container (set OUTPOST_IMAGE)")
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	log := logr.Discard()
	if o.Logger != nil {
		log = logr.FromSlogHandler(o.Logger.Handler())
	}
	// controller-runtime logs through its global logger in places that
	// take no logger (and warns when it was never set).
	ctrllog.SetLogger(log)
	probe := o.ProbeAddr
	if probe == "" {
		probe = "0"
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme: scheme,
		Logger: log,
		// One replica, no lease: a restarted operator (kill -9 included)
		// works at once instead of waiting for a lease to expire. Two
		// replicas would both create pods, but pod names are fixed per
		// instance, so they cannot double a job.
		LeaderElection:         false,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: probe,
		// Managed fields are most of an object's size and of no use here.
		// Pods have a transform of their own (slimPod).
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Transform: slimPod}},
		},
		Controller: config.Controller{SkipNameValidation: new(true)},
	})
	if err != nil {
		return fmt.Errorf("training operator: %w", err)
	}
	r := newReconciler(mgr.GetClient(), mgr.GetAPIReader(), o.Image, log)
	r.wrapperKey = o.WrapperKey
	if r.wrapperKey == "" {
		if r.wrapperKey, err = wrapper.Key(); err != nil {
			// Every pod then copies the binary for itself.
			log.Error(err, "the nodes' copies of the job wrapper are not shared")
		}
	}
	if err := r.setup(mgr); err != nil {
		return err
	}

	var synced atomic.Bool
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for _, obj := range []client.Object{&v1alpha1.TrainingJob{}, &corev1.Pod{}, &corev1.Node{}, &amlarcv1alpha1.InstanceType{}} {
			if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
				return fmt.Errorf("informer for %T: %w", obj, err)
			}
		}
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
			log.Info("caches synced; admitting jobs")
		}
		return nil
	}))
	if err != nil {
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

// workers is how many jobs are reconciled at once: each waits on API
// calls (status writes, pod creations). Admission passes, which must not
// overlap, take a lock of their own (reconciler.admitting).
const workers = 16

func (r *reconciler) setup(mgr ctrl.Manager) error {
	starts := make(chan event.GenericEvent, 256)
	r.starts = starts
	return builder.ControllerManagedBy(mgr).
		Named("trainingjob").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		// A job's own status writes (the operator's) bring nothing to do:
		// its pods' changes do.
		For(&v1alpha1.TrainingJob{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Pod{}).
		WatchesRawSource(source.Channel(starts, &handler.EnqueueRequestForObject{})).
		// Room that frees up or appears lets waiting jobs in: a pod that
		// ends, a node that comes or changes, an instance type that
		// changes, a job ahead in the queue that leaves it.
		Watches(&corev1.Pod{}, handler.Funcs{
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.copies.Observe(e.ObjectNew.(*corev1.Pod))
				if holdsRoom(e.ObjectOld.(*corev1.Pod)) && !holdsRoom(e.ObjectNew.(*corev1.Pod)) {
					r.requeuePending(ctx, q)
				}
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				if p, ok := e.Object.(*corev1.Pod); !ok || holdsRoom(p) {
					r.requeuePending(ctx, q) // !ok: a tombstone, whose state is unknown
				}
			},
		}).
		Watches(&corev1.Node{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.requeuePending(ctx, q)
			},
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				old, cur := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
				if old.Status.NodeInfo.BootID != cur.Status.NodeInfo.BootID {
					r.copies.ForgetNode(cur.Name) // a machine that restarted may have lost them
				}
				if nodeChanged(old, cur) {
					r.requeuePending(ctx, q)
				}
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.copies.ForgetNode(e.Object.GetName())
				r.requeuePending(ctx, q)
			},
		}).
		Watches(&amlarcv1alpha1.InstanceType{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.requeuePending(ctx, q)
			},
			UpdateFunc: func(ctx context.Context, _ event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.requeuePending(ctx, q)
			},
			DeleteFunc: func(ctx context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.requeuePending(ctx, q)
			},
		}).
		Watches(&v1alpha1.TrainingJob{}, handler.Funcs{
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				// A job that leaves the queue without being admitted gives
				// back the room the jobs behind it counted it to take.
				old, cur := e.ObjectOld.(*v1alpha1.TrainingJob), e.ObjectNew.(*v1alpha1.TrainingJob)
				if r.pending(old) && (terminal(cur.Status.Phase) || cur.Spec.Cancel) {
					r.requeuePending(ctx, q)
				}
			},
			DeleteFunc: func(ctx context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.requeuePending(ctx, q)
			},
		}).
		Complete(r)
}

// holdsRoom tells whether a pod counts against its node's room.
func holdsRoom(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// nodeChanged tells whether an update changes what admission sees of a
// node; nodes update their status every few seconds for nothing else.
func nodeChanged(a, b *corev1.Node) bool {
	return kubenode.Ready(a) != kubenode.Ready(b) || a.Spec.Unschedulable != b.Spec.Unschedulable ||
		!reflect.DeepEqual(a.Labels, b.Labels) || !equalResources(a.Status.Allocatable, b.Status.Allocatable)
}

func equalResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, q := range a {
		if p, ok := b[k]; !ok || p.Cmp(q) != 0 {
			return false
		}
	}
	return true
}

// requeuePending queues an admission pass when a job waits for admission:
// the pass decides for all of them on one view of the cluster (see pass),
// and a burst of events queues it once.
func (r *reconciler) requeuePending(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	var jobs v1alpha1.TrainingJobList
	if err := r.client.List(ctx, &jobs, client.UnsafeDisableDeepCopy); err != nil {
		// The cache answers lists from memory; its only errors are a type
		// it does not know, which setup rules out. The waiting jobs' own
		// recheck covers it anyway.
		r.log.Error(err, "list waiting jobs")
		return
	}
	for i := range jobs.Items {
		if r.pending(&jobs.Items[i]) {
			q.Add(admissionPass)
			return
		}
	}
}
