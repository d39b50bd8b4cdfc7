package node

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/cgroups"
	"outpost.dev/outpost/internal/clusterdns"
	"outpost.dev/outpost/internal/node/podstatus"
	"outpost.dev/outpost/internal/podnet"
	"outpost.dev/outpost/internal/serviceproxy"
	"outpost.dev/outpost/internal/version"
)

// heartbeat is how often the node's lease and Ready condition are renewed.
const heartbeat = 10 * time.Second

// Agent is a running node.
type Agent struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	ips    *ipPool
	podnet *podnet.Node // nil where the kernel cannot run the pods' address programs
	// cgroups enforce the containers' resource limits (what the machine
	// allows of them).
	cgroups  *cgroups.Manager
	recorder record.EventRecorder
	statuses *podstatus.Manager
	services listersv1.ServiceLister
	capacity corev1.ResourceList
	apiHost  string
	apiPort  string
	// dnsIP is the cluster DNS address pods get as their nameserver.
	dnsIP string

	kubeletVersion string
	started        metav1.Time

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	// ended holds the pods whose worker has stopped them for good but whose
	// object is still in the API (a finalizer holds it, or the delete is on
	// its way): an update of such a pod must not start it again.
	ended map[types.UID]bool
	wg    sync.WaitGroup
}

// Run registers the node and runs its pods until ctx ends; then it stops every
// pod's processes (the pods stay in the API and start again with the node).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 100, 200
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ips, err := newIPPool(cfg.PodCIDR)
	if err != nil {
		return fmt.Errorf("pod CIDR %q: %w", cfg.PodCIDR, err)
	}
	host, port, _ := strings.Cut(cfg.APIServer, ":")
	a := &Agent{cfg: cfg, client: client, log: log, ips: ips, capacity: capacity(cfg.Dir),
		apiHost: host, apiPort: port, workers: map[types.UID]*podWorker{}, ended: map[types.UID]bool{},
		started: metav1.Now()}
	if err := cfg.applyCapacity(a.capacity); err != nil {
		return err
	}

	dnsIP, err := clusterdns.ServiceIP(cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	a.dnsIP = dnsIP.String()

	if a.podnet, err = podnet.Open(cfg.Name, cfg.Dir); err != nil {
		log.Warn("pods share the host's addresses: a server must bind $POD_IP, as two pods binding every address on one port collide (cgroup v2 BPF programs unavailable)", "err", err)
	}
	// After podnet: on a cgroup v2 only machine, the containers' cgroups are
	// children of the pods' podnet cgroups.
	a.cgroups = cgroups.Open(cfg.Name, cfg.Dir, log)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "outpost-node", Host: cfg.Name})

	// The status manager outlives ctx a little: the pods' final states are
	// written after they have been stopped.
	a.statuses = podstatus.New(client, log)
	statusCtx, stopStatuses := context.WithCancel(context.Background())
	statusesDone := make(chan struct{})
	go func() { defer close(statusesDone); a.statuses.Run(statusCtx, 4) }()
	defer func() { stopStatuses(); <-statusesDone }()

	if err := a.register(ctx); err != nil {
		return fmt.Errorf("register node %s: %w", cfg.Name, err)
	}
	// Before the node API answers, which tells `cluster up` the node is
	// ready: pods started from then on resolve names.
	if !cfg.NoClusterServices {
		if err := a.ensureDNSService(ctx); err != nil {
			return err
		}
		if err := clusterdns.Start(ctx, client, clusterdns.Options{Addr: net.JoinHostPort(a.dnsIP, "53"),
			Domain: clusterDomain, ResolvConf: a.resolvConfPath(), Logger: log}); err != nil {
			return err
		}
	}
	logs, err := a.serveLogs()
	if err != nil {
		return err
	}
	defer logs.Close()

	all := informers.NewSharedInformerFactory(client, 0)
	a.services = all.Core().V1().Services().Lister()
	mine := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.Name).String()
	}))
	pods := mine.Core().V1().Pods().Informer()
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.sync(ctx, obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { a.sync(ctx, obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				a.forget(p.UID)
				a.statuses.Forget(p.UID)
			}
		},
	}); err != nil {
		return err
	}
	all.Start(ctx.Done())
	all.WaitForCacheSync(ctx.Done())
	mine.Start(ctx.Done())

	if !cfg.NoClusterServices {
		go serviceproxy.New(client, serviceproxy.Options{NodeIP: "127.0.0.1", Logger: log, Reserved: []netip.Addr{dnsIP}}).Run(ctx)
	}
	go a.heartbeat(ctx)
	log.Info("node running", "name", cfg.Name, "podCIDR", cfg.PodCIDR, "port", cfg.Port)

	<-ctx.Done()
	log.Info("node stopping: stopping pods")
	a.mu.Lock()
	for _, w := range a.workers {
		w.shutdown()
	}
	a.mu.Unlock()
	a.wg.Wait()
	if err := a.podnet.Close(); err != nil {
		log.Warn("node stopping: remove the node's cgroup", "err", err)
	}
	if err := a.cgroups.Close(); err != nil {
		log.Warn("node stopping: remove the containers' cgroups", "err", err)
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.statuses.Flush(flushCtx); err != nil {
		log.Warn("node stopping: not every pod status was written; the node writes them again when it starts", "err", err)
	}
	return nil
}

// sync hands a pod's latest version to its worker, starting one for a new pod.
func (a *Agent) sync(ctx context.Context, pod *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.workers[pod.UID]
	if !ok {
		if a.ended[pod.UID] {
			return
		}
		if pod.DeletionTimestamp != nil && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
			// Nothing runs for a finished pod: let it go at once.
			a.statuses.Delete(podstatus.RefOf(pod))
			return
		}
		w = newPodWorker(a, pod)
		a.workers[pod.UID] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			delete(a.workers, pod.UID)
			if ctx.Err() == nil && !w.vanished {
				a.ended[pod.UID] = true
			}
			a.mu.Unlock()
		}()
		// Fall through: a pod deleted before its worker started (the node
		// agent was down) is to be stopped, not started.
	}
	w.update(pod)
}

// forget stops a pod that vanished from the API (force deletion, or the end
// of its deletion) at once.
func (a *Agent) forget(uid types.UID) {
	a.mu.Lock()
	w := a.workers[uid]
	delete(a.ended, uid)
	if w != nil {
		w.vanished = true // the object is gone: nothing to remember it for
	}
	a.mu.Unlock()
	if w != nil {
		w.gone()
	}
}

func (a *Agent) worker(namespace, name string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		if w.namespace == namespace && w.name == name {
			return w
		}
	}
	return nil
}

// capacity is what the scheduler may place on this node: the machine's CPUs,
// memory and GPUs.
func capacity(dir string) corev1.ResourceList {
	r := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods:   *resource.NewQuantity(250, resource.DecimalSI),
		"nvidia.com/gpu":      *resource.NewQuantity(int64(gpuCount()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memTotal(), resource.BinarySI),
	}
	return r
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// gpuCount is the number of GPUs nvidia-smi lists, 0 where it is absent.
func gpuCount() int {
	out, err := exec.Command("nvidia-smi", "-L").Output()
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "GPU ") {
			n++
		}
	}
	return n
}

func (a *Agent) nodeStatus(kubeletVersion string) corev1.NodeStatus {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		// The conditions hold from the agent's start: that is their last transition.
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: a.started}
	}
	hostname, _ := os.Hostname()
	machineID, _ := os.ReadFile("/etc/machine-id")
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return corev1.NodeStatus{
		Capacity:    a.capacity,
		Allocatable: a.capacity,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "outpost node has sufficient memory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "outpost node has no disk pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "outpost node has sufficient PID available"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "outpost node is posting ready status"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: hostname},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.cfg.Port)}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               strings.TrimSpace(string(machineID)),
			BootID:                  strings.TrimSpace(string(bootID)),
			KernelVersion:           strings.TrimSpace(string(kernel)),
			OSImage:                 "outpost process node",
			ContainerRuntimeVersion: "outpost://" + version.Version,
			KubeletVersion:          kubeletVersion,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
	}
}

// register creates the Node, or takes over the one a previous run left.
func (a *Agent) register(ctx context.Context) error {
	kubeletVersion := "v0.0.0"
	if v, err := a.client.Discovery().ServerVersion(); err == nil {
		// The scheduler and kubectl compare node and control-plane versions; the
		// node speaks the API of the control plane it was started with.
		kubeletVersion = v.GitVersion
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.Name, Labels: map[string]string{
			"kubernetes.io/hostname": a.cfg.Name,
			"kubernetes.io/os":       runtime.GOOS,
			"kubernetes.io/arch":     runtime.GOARCH,
			"outpost.dev/node":       "process",
		}},
		Spec: corev1.NodeSpec{PodCIDR: a.cfg.PodCIDR, PodCIDRs: []string{a.cfg.PodCIDR}},
	}
	setLabels(n, a.cfg.Labels)
	if _, err := a.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		// Taken over: the configured labels may have changed meanwhile.
		_, err = ApplyLabels(ctx, a.client, a.cfg.Name, a.cfg.Labels)
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	a.kubeletVersion = kubeletVersion
	return a.updateNodeStatus(ctx)
}

// labelsAnnotation lists the keys of the labels the node's configuration set,
// so that a label dropped from it is removed while labels set by others stay.
const labelsAnnotation = "outpost.dev/configured-labels"

// setLabels sets the configured labels on n and records their keys.
func setLabels(n *corev1.Node, labels map[string]string) {
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	if old := n.Annotations[labelsAnnotation]; old != "" {
		for _, k := range strings.Split(old, ",") {
			if _, keep := labels[k]; !keep {
				delete(n.Labels, k)
			}
		}
	}
	keys := make([]string, 0, len(labels))
	for k, v := range labels {
		n.Labels[k] = v
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		delete(n.Annotations, labelsAnnotation)
	} else {
		n.Annotations[labelsAnnotation] = strings.Join(keys, ",")
	}
}

// ApplyLabels makes the Node carry labels (as configured for it) and drops
// those an earlier configuration set but this one does not; labels set by
// others are kept. It tells whether the Node changed.
func ApplyLabels(ctx context.Context, client kubernetes.Interface, name string, labels map[string]string) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		before := n.DeepCopy()
		setLabels(n, labels)
		if maps.Equal(before.Labels, n.Labels) && maps.Equal(before.Annotations, n.Annotations) {
			return nil
		}
		_, err = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		changed = err == nil
		return err
	})
	return changed, err
}

// updateNodeStatus writes the node's status on its latest version: controllers
// annotate and taint the Node at the same time.
func (a *Agent) updateNodeStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status = a.nodeStatus(a.kubeletVersion)
		_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// heartbeat renews the node lease and the Ready condition.
func (a *Agent) heartbeat(ctx context.Context) {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		now := metav1.NewMicroTime(time.Now())
		lease, err := leases.Get(ctx, a.cfg.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.Name},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.cfg.Name),
					LeaseDurationSeconds: ptr.To(int32(4 * heartbeat / time.Second)), RenewTime: &now},
			}, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.RenewTime = &now
			_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("renew node lease", "err", err)
		}
		if err := a.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("update node status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(heartbeat):
		}
	}
}

func (a *Agent) resolvConfPath() string {
	if a.cfg.ResolvConf != "" {
		return a.cfg.ResolvConf
	}
	return "/etc/resolv.conf"
}

// ensureDNSService makes Service kube-system/kube-dns hold the cluster DNS
// address, as on any cluster: the apiserver then never gives it to another
// Service, and tools looking for kube-dns find it. It has no selector: the
// node itself serves the address.
func (a *Agent) ensureDNSService(ctx context.Context) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}},
		Spec: corev1.ServiceSpec{ClusterIP: a.dnsIP, Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
		}},
	}
	api := a.client.CoreV1().Services(metav1.NamespaceSystem)
	cur, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cur, err = api.Create(ctx, svc, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("service kube-system/kube-dns at %s: %w", a.dnsIP, err)
	}
	if cur.Spec.ClusterIP != a.dnsIP {
		// Someone else's kube-dns: pods still get the node's DNS address.
		a.log.Warn("service kube-system/kube-dns does not hold the cluster DNS address; another Service may be given it",
			"clusterIP", cur.Spec.ClusterIP, "clusterDNS", a.dnsIP)
	}
	return nil
}
