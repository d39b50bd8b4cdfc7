package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/api"
	trainingv1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/training"
)

// A job the workspace sends becomes a TrainingJob in its compute's
// namespace, which the training operator runs, and a Secret with the job's
// credentials, which the TrainingJob owns. Both carry labelManagedBy so that
// the agent finds what it made (after a reset, its orphans) and never
// touches anyone else's.
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedByAgent = "outpost-agent"
	secretSuffix   = "-credentials"
	// maxNameLen is a DNS-1123 label's: a TrainingJob's name becomes its
	// pods' names and host names.
	maxNameLen = 63
)

var trainingJobs = schema.GroupVersionResource{Group: trainingv1.Group, Version: trainingv1.Version, Resource: trainingv1.Resource}

// crName is the object name of a job: its name in DNS-1123 label form
// (lower case, anything but letters, digits and '-' turned into '-', no '-'
// at either end, at most 63 characters). When that form differs from the
// name, 6 hex digits of the name's sha256 follow, so that names differing
// only in case or punctuation (Azure ML's "a_b" and "a-b") stay apart.
func crName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	form := strings.Trim(b.String(), "-")
	if form == name && form != "" && len(form) <= maxNameLen {
		return form
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:6]
	base := strings.TrimRight(form[:min(len(form), maxNameLen-len(suffix)-1)], "-")
	if base == "" {
		return "job-" + suffix
	}
	return base + "-" + suffix
}

func jobSecretName(cr string) string { return cr + secretSuffix }

// checkJob tells what in a desired job makes it impossible to run.
func checkJob(j *api.DesiredJob) error {
	switch {
	case j == nil:
		return errors.New("job object without a job payload")
	case j.Name == "":
		return errors.New("job without a name")
	case j.Namespace == "":
		return fmt.Errorf("job %s: no namespace to run in", j.Name)
	case j.Token == "":
		return fmt.Errorf("job %s: no credential", j.Name)
	case j.Image == "":
		return fmt.Errorf("job %s: no image", j.Name)
	case j.InstanceCount < 0 || j.InstanceCount > math.MaxInt32:
		return fmt.Errorf("job %s: instance count %d, want 1 to %d", j.Name, j.InstanceCount, math.MaxInt32)
	}
	if d := j.Distribution; d != nil {
		for what, n := range map[string]int{"process_count_per_instance": d.ProcessCountPerInstance,
			"worker_count": d.WorkerCount, "parameter_server_count": d.ParameterServerCount} {
			if n < 0 || n > math.MaxInt32 {
				return fmt.Errorf("job %s: distribution %s %d, want 0 to %d", j.Name, what, n, math.MaxInt32)
			}
		}
	}
	return nil
}

// jobURL is the base of the job-run API for the job's pods.
func jobURL(workspaceURL string, j *api.DesiredJob) string {
	return strings.TrimRight(workspaceURL, "/") + "/jobrun/v1/resourceGroups/" + url.PathEscape(j.ResourceGroup) +
		"/workspaces/" + url.PathEscape(j.Workspace) + "/jobs/" + url.PathEscape(j.Name)
}

// jobSecretData is what the job's pods get as environment: how to reach the
// workspace (through the agent's proxy, if it has one) and the credential.
func jobSecretData(cfg Config, j *api.DesiredJob) map[string][]byte {
	data := map[string][]byte{
		trainingv1.EnvJobURL:   []byte(jobURL(cfg.WorkspaceURL, j)),
		trainingv1.EnvJobToken: []byte(j.Token),
	}
	if len(cfg.CAPEM) > 0 {
		data[trainingv1.EnvJobCA] = cfg.CAPEM
	}
	if cfg.Proxy != "" {
		data[trainingv1.EnvProxy] = []byte(cfg.Proxy)
	}
	if cfg.NoProxy != "" {
		data[trainingv1.EnvNoProxy] = []byte(cfg.NoProxy)
	}
	return data
}

func jobLabels(cr string) map[string]string {
	return map[string]string{labelManagedBy: managedByAgent, trainingv1.LabelJob: cr}
}

func jobAnnotations(j *api.DesiredJob) map[string]string {
	return map[string]string{trainingv1.AnnotationJobName: j.Name}
}

// buildTrainingJob is the TrainingJob of job id; j has passed checkJob.
func buildTrainingJob(id string, j *api.DesiredJob) *trainingv1.TrainingJob {
	cr := crName(j.Name)
	tj := &trainingv1.TrainingJob{
		TypeMeta: metav1.TypeMeta{APIVersion: trainingv1.GroupVersion.String(), Kind: trainingv1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: cr, Namespace: j.Namespace,
			Labels: jobLabels(cr), Annotations: jobAnnotations(j)},
		Spec: trainingv1.TrainingJobSpec{
			JobID:          id,
			Image:          j.Image,
			InstanceType:   j.InstanceType,
			InstanceCount:  int32(max(j.InstanceCount, 1)), // 0 is CLI v2's "one"
			ShmSize:        j.ShmSize,
			TimeoutSeconds: j.TimeoutSeconds,
			SecretName:     jobSecretName(cr),
			Cancel:         j.Cancel,
		},
	}
	if d := j.Distribution; d != nil {
		tj.Spec.Distribution = &trainingv1.Distribution{Type: d.Type, ProcessCountPerInstance: int32(d.ProcessCountPerInstance),
			WorkerCount: int32(d.WorkerCount), ParameterServerCount: int32(d.ParameterServerCount)}
	}
	return tj
}

// errBadJob is a job the agent cannot run whatever the cluster: applying it
// again would not help; the workspace has to send another.
var errBadJob = errors.New("bad job")

// errNoTrainingJobs is a job applied before its cluster serves TrainingJobs:
// the extension is not installed with enableTraining=True, or not yet.
var errNoTrainingJobs = fmt.Errorf("the cluster does not serve %s (%s): the ML extension with enableTraining=True installs it",
	trainingv1.Kind, trainingv1.GroupVersion)

// jobWorkers bounds the jobs applied or deleted at once: a burst of
// submissions arrives as one sync answer, which one job at a time would
// turn into a queue of round trips to the API server.
const jobWorkers = 8

// applyJobs applies the jobs among changed, jobWorkers at a time, and
// returns those to apply again later.
func (a *Agent) applyJobs(ctx context.Context, changed map[api.ObjectRef]api.DesiredObject) map[api.ObjectRef]bool {
	return a.eachJob(ctx, changed, func(ref api.ObjectRef, o api.DesiredObject) bool {
		err := a.applyJob(ctx, o.ID, o.Job)
		if err == nil {
			return false
		}
		a.log.Error("apply job", "job", o.ID, "err", err)
		return !errors.Is(err, errBadJob)
	})
}

// deleteJobs deletes the jobs among deleted, jobWorkers at a time, and
// returns those whose deletion failed.
func (a *Agent) deleteJobs(ctx context.Context, deleted map[api.ObjectRef]api.DesiredObject) map[api.ObjectRef]bool {
	return a.eachJob(ctx, deleted, func(ref api.ObjectRef, o api.DesiredObject) bool {
		err := a.deleteJob(ctx, o.ID, o.Job)
		if err != nil {
			a.log.Error("delete job", "job", o.ID, "err", err)
		}
		return err != nil
	})
}

// eachJob runs do for every job of objs, jobWorkers at a time. A job's
// objects are named after it, and objs holds each job once, so no two
// workers touch the same objects.
func (a *Agent) eachJob(ctx context.Context, objs map[api.ObjectRef]api.DesiredObject, do func(api.ObjectRef, api.DesiredObject) (retry bool)) map[api.ObjectRef]bool {
	work := make(chan api.ObjectRef)
	var mu sync.Mutex
	retry := map[api.ObjectRef]bool{}
	var wg sync.WaitGroup
	for range jobWorkers {
		wg.Go(func() {
			for ref := range work {
				if do(ref, objs[ref]) {
					mu.Lock()
					retry[ref] = true
					mu.Unlock()
				}
			}
		})
	}
	for ref, o := range objs {
		if o.Kind == api.KindJob {
			work <- ref
		}
	}
	close(work)
	wg.Wait()
	return retry
}

// cachedJob is the TrainingJob the agent's informer holds under that name:
// nil when it holds none, or has not listed them all yet (known false).
func (a *Agent) cachedJob(namespace, name string) (live *unstructured.Unstructured, known bool) {
	a.jobWatch.mu.Lock()
	inf := a.jobWatch.informer
	a.jobWatch.mu.Unlock()
	if inf == nil || !inf.HasSynced() {
		return nil, false
	}
	obj, ok, err := inf.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, err == nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok
}

// applyJob makes the TrainingJob and Secret of job object id, or brings
// those there in line. A TrainingJob that exists is never made again (its
// status is the operator's): only spec.cancel follows the workspace, the
// rest of a job's spec never changes. Applying the same job twice changes
// nothing.
//
// The informer's view replaces a read of the TrainingJob: one it lacks is
// created (AlreadyExists, when it is behind, falls back to a read), and one
// it has is checked as it shows it; its spec.cancel may lag, so a cancel
// is patched again at worst. A new job costs three calls: its Secret, its
// TrainingJob, its Secret's owner.
func (a *Agent) applyJob(ctx context.Context, id string, j *api.DesiredJob) error {
	if err := checkJob(j); err != nil {
		return fmt.Errorf("%w: %w", errBadJob, err)
	}
	want := buildTrainingJob(id, j)
	cr := want.Name
	ri := a.dyn.Resource(trainingJobs).Namespace(j.Namespace)
	live, known := a.cachedJob(j.Namespace, cr)
	if live == nil && known {
		created, err := a.createJob(ctx, j, want)
		switch {
		case err == nil:
			return a.applyJobSecret(ctx, j, cr, created)
		case !apierrors.IsAlreadyExists(err):
			return err
		}
	}
	if live == nil {
		var err error
		live, err = ri.Get(ctx, cr, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := a.createJob(ctx, j, want)
			if err != nil {
				return err // AlreadyExists included: whoever made it, the retry reads it.
			}
			return a.applyJobSecret(ctx, j, cr, created)
		case err != nil:
			return fmt.Errorf("read TrainingJob %s/%s: %w", j.Namespace, cr, err)
		}
	}
	if other := jobIDOf(live); other != id {
		if live.GetDeletionTimestamp() != nil {
			return fmt.Errorf("job %s: TrainingJob %s/%s of an earlier job of that name is still being deleted", j.Name, j.Namespace, cr)
		}
		return fmt.Errorf("job %s: TrainingJob %s/%s exists already for another job (%q)", j.Name, j.Namespace, cr, other)
	}
	cancel, found, err := unstructured.NestedBool(live.Object, "spec", "cancel")
	if err != nil || (found && cancel) != j.Cancel {
		patch := fmt.Appendf(nil, `{"spec":{"cancel":%t}}`, j.Cancel)
		live, err = ri.Patch(ctx, cr, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
		if err != nil {
			return fmt.Errorf("set cancel=%t on TrainingJob %s/%s: %w", j.Cancel, j.Namespace, cr, err)
		}
		a.log.Info("job cancel", "job", j.Name, "cancel", j.Cancel)
	}
	return a.applyJobSecret(ctx, j, cr, live)
}

// createJob creates the job's Secret, then its TrainingJob; the Secret
// first, because the operator may start the job's pods as soon as the
// TrainingJob exists, and they need it. The Secret gets its owner once the
// TrainingJob has a UID.
func (a *Agent) createJob(ctx context.Context, j *api.DesiredJob, want *trainingv1.TrainingJob) (*unstructured.Unstructured, error) {
	cr := want.Name
	if err := a.applyJobSecret(ctx, j, cr, nil); err != nil {
		return nil, err
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return nil, fmt.Errorf("TrainingJob %s/%s: %w", j.Namespace, cr, err)
	}
	delete(obj, "status") // the operator's
	live, err := a.dyn.Resource(trainingJobs).Namespace(j.Namespace).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{FieldManager: fieldManager})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("job %s: %w", j.Name, errNoTrainingJobs)
	case apierrors.IsAlreadyExists(err):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("create TrainingJob %s/%s: %w", j.Namespace, cr, err)
	}
	a.log.Info("created job", "job", j.Name, "namespace", j.Namespace, "trainingJob", cr)
	return live, nil
}

// applyJobSecret applies the job's Secret, owned by its TrainingJob owner
// when there is one already.
func (a *Agent) applyJobSecret(ctx context.Context, j *api.DesiredJob, cr string, owner *unstructured.Unstructured) error {
	s := applycorev1.Secret(jobSecretName(cr), j.Namespace).
		WithLabels(jobLabels(cr)).WithAnnotations(jobAnnotations(j)).
		WithType(corev1.SecretTypeOpaque).WithData(jobSecretData(a.cfg, j))
	if owner != nil {
		s.WithOwnerReferences(applymetav1.OwnerReference().WithAPIVersion(trainingv1.GroupVersion.String()).
			WithKind(trainingv1.Kind).WithName(owner.GetName()).WithUID(owner.GetUID()).WithController(true))
	}
	if _, err := a.kube.CoreV1().Secrets(j.Namespace).Apply(ctx, s, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply Secret %s/%s of job %s: %w", j.Namespace, jobSecretName(cr), j.Name, err)
	}
	return nil
}

func jobIDOf(u *unstructured.Unstructured) string {
	id, _, _ := unstructured.NestedString(u.Object, "spec", "jobId") // not a string: no job of ours
	return id
}

// deleteJob deletes the TrainingJob of job object id; its pods and Secret
// follow by their owner references. The Secret is deleted too, in case the
// TrainingJob never came to own it (its CRD was missing). The informer's
// view replaces a read of the TrainingJob when it has it.
func (a *Agent) deleteJob(ctx context.Context, id string, j *api.DesiredJob) error {
	if j == nil || j.Name == "" || j.Namespace == "" {
		return nil // never applied: checkJob refused it
	}
	cr := crName(j.Name)
	ri := a.dyn.Resource(trainingJobs).Namespace(j.Namespace)
	done := false
	if live, _ := a.cachedJob(j.Namespace, cr); live != nil && jobIDOf(live) == id {
		err := ri.Delete(ctx, cr, deleteOptions(live.GetUID()))
		switch {
		case err == nil:
			a.log.Info("deleted job", "job", j.Name, "namespace", j.Namespace, "trainingJob", cr)
			if err := a.deleteJobPods(ctx, j, cr, live.GetUID()); err != nil {
				return err
			}
			done = true
		case apierrors.IsNotFound(err):
			done = true
		case apierrors.IsConflict(err):
			// The informer is behind: another TrainingJob has that name now.
		default:
			return fmt.Errorf("delete TrainingJob %s/%s: %w", j.Namespace, cr, err)
		}
	}
	if !done {
		live, err := ri.Get(ctx, cr, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err): // gone, or the cluster does not serve TrainingJobs
		case err != nil:
			return fmt.Errorf("read TrainingJob %s/%s: %w", j.Namespace, cr, err)
		case jobIDOf(live) != id:
			return nil // another job's, Secret included
		default:
			if err := deleted(ri.Delete(ctx, cr, deleteOptions(live.GetUID()))); err != nil {
				return fmt.Errorf("delete TrainingJob %s/%s: %w", j.Namespace, cr, err)
			}
			a.log.Info("deleted job", "job", j.Name, "namespace", j.Namespace, "trainingJob", cr)
			if err := a.deleteJobPods(ctx, j, cr, live.GetUID()); err != nil {
				return err
			}
		}
	}
	s, err := a.kube.CoreV1().Secrets(j.Namespace).Get(ctx, jobSecretName(cr), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("read Secret %s/%s: %w", j.Namespace, jobSecretName(cr), err)
	case s.Labels[labelManagedBy] != managedByAgent || s.Labels[trainingv1.LabelJob] != cr:
		return nil // not made by the agent
	}
	if err := deleted(a.kube.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, deleteOptions(s.UID))); err != nil {
		return fmt.Errorf("delete Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// deleteJobPods deletes the pods of a deleted TrainingJob. The garbage
// collector would, but it learns of a kind added after it started (the
// TrainingJob CRD comes with the extension) only at its next discovery
// resync, up to half a minute later: finished pods would linger until then.
// The pods are read by name (the operator names them <job>-<instance>), not
// listed: a list by label costs the API server every pod of the namespace.
func (a *Agent) deleteJobPods(ctx context.Context, j *api.DesiredJob, cr string, owner types.UID) error {
	pods := a.kube.CoreV1().Pods(j.Namespace)
	for i := range max(j.InstanceCount, 1) {
		name := training.PodName(cr, i)
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return fmt.Errorf("read pod %s/%s: %w", j.Namespace, name, err)
		}
		if c := metav1.GetControllerOf(p); c == nil || c.UID != owner {
			continue // another job's that reuses the name
		}
		if err := deleted(pods.Delete(ctx, p.Name, deleteOptions(p.UID))); err != nil {
			return fmt.Errorf("delete pod %s/%s: %w", j.Namespace, p.Name, err)
		}
	}
	return nil
}

// deleteOptions delete the object of that UID only, in the background.
func deleteOptions(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
		Preconditions: &metav1.Preconditions{UID: ptr.To(uid)}}
}

// deleted is the error of a delete by deleteOptions, nil for an object
// deleted or replaced meanwhile (left alone).
func deleted(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// wantedJobs maps the namespace/name of every cached job's TrainingJob to
// the job's id.
func (a *Agent) wantedJobs() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	wanted := map[string]string{}
	for _, o := range a.objects {
		if o.Kind == api.KindJob && o.Job != nil {
			wanted[o.Job.Namespace+"/"+crName(o.Job.Name)] = o.ID
		}
	}
	return wanted
}

// pruneOrphanJobs deletes the TrainingJobs and Secrets the agent made for
// jobs its cache no longer has: after a reset, those deleted while the agent
// was away, and those whose deletion failed.
func (a *Agent) pruneOrphanJobs(ctx context.Context) error {
	wanted := a.wantedJobs()
	sel := metav1.ListOptions{LabelSelector: labelManagedBy + "=" + managedByAgent}
	var errs []error
	list, err := a.dyn.Resource(trainingJobs).List(ctx, sel)
	switch {
	case apierrors.IsNotFound(err): // the cluster does not serve TrainingJobs: none to prune
	case err != nil:
		errs = append(errs, fmt.Errorf("list TrainingJobs: %w", err))
	default:
		for _, o := range list.Items {
			if id := jobIDOf(&o); (id != "" && wanted[o.GetNamespace()+"/"+o.GetName()] == id) || o.GetDeletionTimestamp() != nil {
				continue
			}
			if err := deleted(a.dyn.Resource(trainingJobs).Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), deleteOptions(o.GetUID()))); err != nil {
				errs = append(errs, fmt.Errorf("delete TrainingJob %s/%s: %w", o.GetNamespace(), o.GetName(), err))
				continue
			}
			a.log.Info("pruned job", "job", o.GetAnnotations()[trainingv1.AnnotationJobName], "namespace", o.GetNamespace(), "trainingJob", o.GetName())
		}
	}
	secrets, err := a.kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: sel.LabelSelector + "," + trainingv1.LabelJob})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list job Secrets: %w", err))...)
	}
	for _, s := range secrets.Items {
		if _, ok := wanted[s.Namespace+"/"+s.Labels[trainingv1.LabelJob]]; ok || s.DeletionTimestamp != nil {
			continue
		}
		if err := deleted(a.kube.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, deleteOptions(s.UID))); err != nil {
			errs = append(errs, fmt.Errorf("delete Secret %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// jobWatch follows the TrainingJobs the agent made, once the cluster serves
// them (the extension installs the CRD after the agent starts).
type jobWatch struct {
	mu       sync.Mutex
	informer cache.SharedIndexInformer
}

// watchJobs returns the informer of the agent's TrainingJobs, started with
// ctx the first time it is called while the cluster serves them; nil before.
// A status change it sees wakes the report loop.
func (a *Agent) watchJobs(ctx context.Context) cache.SharedIndexInformer {
	w := &a.jobWatch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.informer != nil {
		return w.informer
	}
	served, err := a.servesTrainingJobs()
	if err != nil {
		a.log.Warn("look for the TrainingJob API", "err", err)
		return nil
	}
	if !served {
		return nil
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(a.dyn, trainingJobs, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = labelManagedBy + "=" + managedByAgent }).Informer()
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if _, ok, _ := jobReportOf(obj); ok {
				a.kick()
			}
		},
		UpdateFunc: func(old, cur any) {
			was, _, _ := jobReportOf(old)
			is, _, _ := jobReportOf(cur)
			if !jobReportEqual(was, is) {
				a.kick()
			}
		},
		// A deleted job is no longer reported: nothing to say at once.
	})
	if err != nil {
		a.log.Warn("watch TrainingJobs", "err", err) // only when the informer has stopped, which it has not
		return nil
	}
	a.bg.Go(func() { inf.RunWithContext(ctx) })
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), inf.HasSynced) && ctx.Err() == nil {
		// The reports carry what it has until it has all.
		a.log.Warn("TrainingJobs not listed yet; reporting jobs as they come")
	}
	w.informer = inf
	return inf
}

func (a *Agent) servesTrainingJobs() (bool, error) {
	rl, err := a.kube.Discovery().ServerResourcesForGroupVersion(trainingv1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == trainingv1.Resource }), nil
}

// jobReports is the state of every job the agent made that its operator has
// given a phase, by id.
func (a *Agent) jobReports(ctx context.Context) []api.JobReport {
	inf := a.watchJobs(ctx)
	if inf == nil {
		return nil
	}
	var out []api.JobReport
	for _, obj := range inf.GetStore().List() {
		r, ok, err := jobReportOf(obj)
		if err != nil {
			a.log.Warn("unreadable TrainingJob", "err", err)
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(x, y api.JobReport) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// jobReportOf reads a TrainingJob's state; ok is false when there is
// nothing to report: not a job of the workspace, or no phase yet.
func jobReportOf(obj any) (r api.JobReport, ok bool, err error) {
	u, isU := obj.(*unstructured.Unstructured)
	if !isU {
		return r, false, nil // a deletion tombstone
	}
	var tj trainingv1.TrainingJob
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &tj); err != nil {
		return r, false, fmt.Errorf("TrainingJob %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	if tj.Spec.JobID == "" || tj.Status.Phase == "" {
		return r, false, nil
	}
	st := tj.Status
	return api.JobReport{ID: tj.Spec.JobID, Phase: st.Phase, Reason: st.Reason, Message: st.Message,
		StartTime: utcTime(st.StartTime), EndTime: utcTime(st.CompletionTime)}, true, nil
}

func utcTime(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return ptr.To(t.UTC())
}

func jobReportEqual(x, y api.JobReport) bool {
	timeEqual := func(s, t *time.Time) bool { return (s == nil) == (t == nil) && (s == nil || s.Equal(*t)) }
	return x.ID == y.ID && x.Phase == y.Phase && x.Reason == y.Reason && x.Message == y.Message &&
		timeEqual(x.StartTime, y.StartTime) && timeEqual(x.EndTime, y.EndTime)
}

// changedJobs are the jobs of full whose state differs from that in acked.
func changedJobs(acked, full []api.JobReport) []api.JobReport {
	was := make(map[string]api.JobReport, len(acked))
	for _, j := range acked {
		was[j.ID] = j
	}
	var out []api.JobReport
	for _, j := range full {
		if w, ok := was[j.ID]; !ok || !jobReportEqual(w, j) {
			out = append(out, j)
		}
	}
	return out
}
