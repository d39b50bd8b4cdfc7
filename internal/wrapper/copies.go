package wrapper

import (
	"path"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// trusted is how long an install seen to succeed on a node vouches for the
// node's copy. Pods made meanwhile skip the install container; the first
// one after it has one again, which marks the copy used (see Install) and
// puts it back should it be gone. It is well under unusedFor, so that a
// copy that pods without an install container run is never collected.
const trusted = 10 * time.Minute

// InstalledPod is Pod for a node known to hold the copy of the binary
// whose sha256 is key (see Copies): no install container, the copy's folder
// mounted read-only. Should the copy be gone after all, the folder is made
// empty and the container fails to start (see Copies.Observe), rather than
// waiting for a mount forever.
func InstalledPod(key string) (volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	volumes = []corev1.Volume{{Name: VolumeName, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: path.Join(HostDir, key), Type: new(corev1.HostPathDirectoryOrCreate),
	}}}}
	mounts = []corev1.VolumeMount{{Name: VolumeName, MountPath: Dir, ReadOnly: true}}
	return volumes, mounts
}

// Copies is what an operator knows of the nodes' copies: which node holds
// which, as the install containers of its pods showed. The node's
// container start is most of a pod's cost on the node; an install container
// doubles it. The zero value is not usable; a nil *Copies knows nothing.
type Copies struct {
	now func() time.Time

	mu   sync.Mutex
	seen map[string]map[string]time.Time // node -> key -> last install seen to succeed
}

// NewCopies returns a Copies that knows of no copy yet.
func NewCopies() *Copies {
	return &Copies{now: time.Now, seen: map[string]map[string]time.Time{}}
}

// Has tells whether node is known to hold key's copy, and recently enough
// (trusted) that a pod there may go without an install container.
func (c *Copies) Has(node, key string) bool {
	if c == nil || node == "" || key == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.seen[node][key]
	return ok && c.now().Sub(at) < trusted
}

// Observe learns from a pod made by Pod, KeyedPod or InstalledPod: an
// install container that succeeded vouches for its node's copy; a
// container of a pod without one that could not start says the copy may
// be gone, and the node's next pods install it again.
func (c *Copies) Observe(pod *corev1.Pod) {
	node := pod.Spec.NodeName
	if c == nil || node == "" {
		return
	}
	if key := installKey(pod); key != "" {
		for _, s := range pod.Status.InitContainerStatuses {
			if t := s.State.Terminated; s.Name == InstallName && t != nil && t.ExitCode == 0 {
				c.note(node, key, t.FinishedAt.Time)
			}
		}
		return
	}
	key := installedKey(pod)
	if key == "" {
		return
	}
	for _, s := range pod.Status.ContainerStatuses {
		if notStarted(s) {
			c.forget(node, key)
			return
		}
	}
}

// ForgetNode drops what is known of node's copies: it went away, or
// restarted.
func (c *Copies) ForgetNode(node string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.seen, node)
}

func (c *Copies) note(node, key string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The install's end, as the node reports it (whole seconds), or now
	// when it reports none; never later than now.
	if now := c.now(); at.IsZero() || at.After(now) {
		at = now
	}
	m := c.seen[node]
	if m == nil {
		m = map[string]time.Time{}
		c.seen[node] = m
	}
	if at.After(m[key]) {
		m[key] = at
	}
}

func (c *Copies) forget(node, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.seen[node], key)
}

// installKey is the key a pod's install container installs into a node's
// store, "" for none.
func installKey(pod *corev1.Pod) string {
	for _, ic := range pod.Spec.InitContainers {
		if ic.Name != InstallName || len(ic.Args) == 0 {
			continue
		}
		dst := ic.Args[len(ic.Args)-1]
		if key := path.Base(path.Dir(dst)); keyPattern.MatchString(key) && strings.HasPrefix(dst, storeDir+"/") {
			return key
		}
	}
	return ""
}

// installedKey is the key of the copy an InstalledPod mounts, "" for none.
func installedKey(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.Name != VolumeName || v.HostPath == nil {
			continue
		}
		if key, ok := strings.CutPrefix(v.HostPath.Path, HostDir+"/"); ok && keyPattern.MatchString(key) {
			return key
		}
	}
	return ""
}

// notStarted tells whether a container failed to start: its command could
// not be run (the node's StartError, exit code 128) or not even created.
func notStarted(s corev1.ContainerStatus) bool {
	if t := s.State.Terminated; t != nil && (t.Reason == "StartError" || t.Reason == "ContainerCannotRun") {
		return true
	}
	if w := s.State.Waiting; w != nil && (w.Reason == "RunContainerError" || w.Reason == "CreateContainerError" || w.Reason == "StartError") {
		return true
	}
	return false
}
