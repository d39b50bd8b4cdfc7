// Package volume materialises a pod's volumes as host paths the node agent
// can bind into containers.
//
// Prepare works in two phases so that a failure leaves nothing a retry would
// trip over: first it fetches and validates everything (API objects, tokens,
// item paths, hostPath types) without touching the disk, then it writes. If
// the write phase fails, whatever this call created is removed again; files
// it replaced in volumes that already existed are complete either way,
// because each one is written to a temporary file and renamed into place.
package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// Supported names the volume types Prepare handles, in the order they are
// listed in error messages.
var Supported = []string{"emptyDir", "configMap", "secret", "downwardAPI", "projected", "hostPath"}

// Options carries what Prepare needs beyond the pod itself.
type Options struct {
	// Client reads ConfigMaps and Secrets and requests ServiceAccount tokens.
	// It may be nil for pods that only use emptyDir and hostPath volumes.
	Client kubernetes.Interface
	// NodeAllocatable is what a downwardAPI resourceFieldRef reports for a
	// cpu, memory or ephemeral-storage limit the container leaves unset, and
	// what bounds a Memory emptyDir of a pod without a memory limit.
	NodeAllocatable corev1.ResourceList
	// Tokens, when set, keeps ServiceAccount tokens between calls so that a
	// refresh requests a new one only when the old one is due, as the
	// kubelet does. Without it every call requests fresh tokens.
	Tokens *TokenCache
}

type volumeKind int

const (
	kindEmptyDir volumeKind = iota
	kindFiles
	kindHostPath
)

// plan is everything the write phase needs for one volume, computed before
// anything is written so that a bad volume later in the list cannot leave
// earlier ones half done.
type plan struct {
	name  string
	kind  volumeKind
	path  string
	files payload

	// hostCreate is what a *OrCreate hostPath still has to create.
	hostCreate corev1.HostPathType

	// memory is an emptyDir on a tmpfs of tmpfsSize bytes (0: the kernel's
	// default, half the machine's memory).
	memory    bool
	tmpfsSize int64
}

// Prepare creates every volume of the pod under podDir/volumes/<name> (or
// resolves hostPath) and returns, per volume name, the absolute host path to
// bind.
//
// It fails with an error naming the volume and what is wrong: a missing
// non-optional ConfigMap/Secret or key, an unsupported volume type, a failed
// hostPath type check. Errors of all volumes are reported together. On error
// nothing new is left behind, so calling Prepare again once the cause is fixed
// succeeds.
//
// configMap, secret, downwardAPI and projected volumes are written as the
// kubelet writes them (see writeAtomic): each top-level path is a symlink
// through "..data", which an update switches atomically to a new version.
// A Memory emptyDir is a tmpfs; Teardown unmounts it.
//
// Calling Prepare again for a pod whose volumes exist (agent or container
// restart) rewrites configMap, secret, downwardAPI and projected contents
// that changed, including a fresh ServiceAccount token unless opts.Tokens
// holds one that is not yet due, and never touches emptyDir contents. Calls
// for the same pod must not run concurrently.
func Prepare(ctx context.Context, opts Options, pod *corev1.Pod, podDir string) (map[string]string, error) {
	if pod == nil {
		return nil, errors.New("prepare volumes: no pod")
	}
	if podDir == "" {
		return nil, fmt.Errorf("prepare volumes of pod %s/%s: no pod directory", pod.Namespace, pod.Name)
	}
	// Bind mounts need absolute sources, and the agent may change directory.
	podDir, err := filepath.Abs(podDir)
	if err != nil {
		return nil, fmt.Errorf("prepare volumes of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	volRoot := filepath.Join(podDir, "volumes")

	var plans []*plan
	var errs []error
	seen := make(map[string]bool, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if err := checkVolumeName(v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[v.Name] {
			errs = append(errs, fmt.Errorf("volume %q: defined more than once", v.Name))
			continue
		}
		seen[v.Name] = true
		p, err := planVolume(ctx, opts, pod, v, volRoot)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
			continue
		}
		plans = append(plans, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// hostPath volumes go last because creating host directories is the one
	// step that cannot always be fully undone (another writer may have put
	// something into them); everything that can still fail comes first.
	sort.SliceStable(plans, func(i, j int) bool {
		return plans[i].kind != kindHostPath && plans[j].kind == kindHostPath
	})

	var u undo
	paths := make(map[string]string, len(plans))
	for _, p := range plans {
		if err := apply(p, volRoot, &u); err != nil {
			u.run()
			return nil, fmt.Errorf("volume %q: %w", p.name, err)
		}
		paths[p.name] = p.path
	}
	return paths, nil
}

// checkVolumeName guards the one place a pod spec string becomes a path
// component; the API server enforces DNS labels, but a pod may also come from
// a file.
func checkVolumeName(name string) error {
	switch {
	case name == "":
		return errors.New("volume without a name")
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0):
		return fmt.Errorf("volume %q: name is not usable as a directory name", name)
	}
	return nil
}

func planVolume(ctx context.Context, opts Options, pod *corev1.Pod, v *corev1.Volume, volRoot string) (*plan, error) {
	p := &plan{name: v.Name, path: filepath.Join(volRoot, v.Name), kind: kindFiles}
	var err error
	switch src := v.VolumeSource; {
	case src.EmptyDir != nil:
		p.kind = kindEmptyDir
		if err = checkEmptyDir(src.EmptyDir); err == nil && src.EmptyDir.Medium == corev1.StorageMediumMemory {
			p.memory, p.tmpfsSize = true, memoryVolumeSize(opts, pod, src.EmptyDir)
		}
	case src.ConfigMap != nil:
		p.files, err = configMapPayload(ctx, opts, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, modeOr(src.ConfigMap.DefaultMode, defaultFileMode))
	case src.Secret != nil:
		p.files, err = secretPayload(ctx, opts, pod.Namespace, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, modeOr(src.Secret.DefaultMode, defaultFileMode))
	case src.DownwardAPI != nil:
		p.files, err = downwardAPIPayload(opts, pod, src.DownwardAPI.Items, modeOr(src.DownwardAPI.DefaultMode, defaultFileMode))
	case src.Projected != nil:
		p.files, err = projectedPayload(ctx, opts, pod, src.Projected)
	case src.HostPath != nil:
		p.kind = kindHostPath
		p.path, p.hostCreate, err = checkHostPath(src.HostPath)
	default:
		return nil, unsupportedType(&v.VolumeSource)
	}
	if err != nil {
		return nil, err
	}
	if p.kind == kindFiles {
		if err := p.files.checkConflicts(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// unsupportedType names the volume type the way it is spelled in a manifest,
// so the user can find it in their YAML.
func unsupportedType(src *corev1.VolumeSource) error {
	if name := setField(reflect.ValueOf(src).Elem()); name != "" {
		return fmt.Errorf("type %s is not supported on the Outpost node (supported: %s)", name, strings.Join(Supported, ", "))
	}
	return fmt.Errorf("no volume type set (supported: %s)", strings.Join(Supported, ", "))
}

// setField returns the JSON name of the first non-nil pointer field of a
// one-of struct such as VolumeSource or VolumeProjection.
func setField(v reflect.Value) string {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		return name
	}
	return ""
}

func checkEmptyDir(ed *corev1.EmptyDirVolumeSource) error {
	switch {
	case ed.Medium == corev1.StorageMediumDefault, ed.Medium == corev1.StorageMediumMemory:
		return nil
	case strings.HasPrefix(string(ed.Medium), string(corev1.StorageMediumHugePages)):
		// Programs use hugepage volumes for mmap'ing hugetlbfs; a plain
		// directory would fail there in confusing ways, so refuse up front.
		return fmt.Errorf("emptyDir medium %s is not supported on the Outpost node (supported: \"\", Memory)", ed.Medium)
	}
	return fmt.Errorf("emptyDir medium %q is not valid (valid: \"\", Memory)", ed.Medium)
}

func apply(p *plan, volRoot string, u *undo) error {
	switch p.kind {
	case kindEmptyDir:
		if err := ensureVolRoot(volRoot, u); err != nil {
			return err
		}
		// Containers may run as any uid, and the kubelet makes emptyDirs
		// world-writable for exactly that reason.
		if err := ensureVolumeDir(p.path, 0o777, u); err != nil {
			return err
		}
		if p.memory {
			return mountTmpfs(p.path, p.tmpfsSize, u)
		}
		return nil
	case kindFiles:
		if err := ensureVolRoot(volRoot, u); err != nil {
			return err
		}
		if err := ensureVolumeDir(p.path, 0o755, u); err != nil {
			return err
		}
		return writeAtomic(p.path, p.files)
	case kindHostPath:
		return createHostPath(p.path, p.hostCreate, u)
	}
	return fmt.Errorf("internal error: unknown volume kind %d", p.kind)
}

// ensureVolRoot creates podDir/volumes. It is not world-readable because
// secrets and tokens live below it; containers reach their volumes through
// bind mounts, which do not need search permission on the source's parents.
func ensureVolRoot(volRoot string, u *undo) error {
	return mkdirAllTracked(volRoot, 0o750, u)
}

// ensureVolumeDir creates dir unless it exists. An existing directory is left alone, mode included, so that an
// emptyDir a container has chmod'ed keeps its mode across restarts.
func ensureVolumeDir(dir string, mode os.FileMode, u *undo) error {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s exists and is not a directory (it is a %s)", dir, describe(fi.Mode()))
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	u.removeAll(dir)
	// Mkdir is subject to the agent's umask; the mode is part of the contract.
	return os.Chmod(dir, mode)
}

// mkdirAllTracked is os.MkdirAll that remembers which directories it created,
// so that a failed Prepare can remove exactly those and nothing that existed.
func mkdirAllTracked(dir string, mode os.FileMode, u *undo) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", d)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if parent := filepath.Dir(d); parent == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], mode); err != nil {
			// Someone made it meanwhile: fine if it is a directory. A dangling
			// symlink also says "exists", and must not pass for one.
			if fi, serr := os.Stat(missing[i]); errors.Is(err, os.ErrExist) && serr == nil && fi.IsDir() {
				continue
			}
			return err
		}
		u.removeEmpty(missing[i])
	}
	return nil
}

// Refresh brings the configMap, secret, downwardAPI and projected volumes
// that Prepare made for the pod up to date with their sources (and the pod's
// labels and annotations), the way the kubelet's periodic sync does: each
// volume whose contents changed is switched atomically to its new version.
// Other volume types, and volumes Prepare has not made, are left alone. A
// volume whose source cannot be read keeps its last contents; the error names
// it, and the other volumes are refreshed all the same. Refresh must not run
// concurrently with Prepare or Refresh for the same pod.
//
// Files bound into a container through a subPath are not updated: their
// mount holds the version that existed when the container started.
func Refresh(ctx context.Context, opts Options, pod *corev1.Pod, podDir string) error {
	if pod == nil {
		return errors.New("refresh volumes: no pod")
	}
	podDir, err := filepath.Abs(podDir)
	if err != nil {
		return fmt.Errorf("refresh volumes of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	volRoot := filepath.Join(podDir, "volumes")
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		src := v.VolumeSource
		if src.ConfigMap == nil && src.Secret == nil && src.DownwardAPI == nil && src.Projected == nil {
			continue
		}
		if checkVolumeName(v.Name) != nil {
			continue // Prepare refused it, so there is nothing to refresh
		}
		if fi, err := os.Lstat(filepath.Join(volRoot, v.Name)); err != nil || !fi.IsDir() {
			continue
		}
		p, err := planVolume(ctx, opts, pod, v, volRoot)
		if err == nil {
			err = writeAtomic(p.path, p.files)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// undo records what a Prepare call created, newest last.
type undo struct {
	steps []func()
}

// removeAll is for directories this call created and filled: nobody else can
// have put anything there yet.
func (u *undo) removeAll(path string) {
	u.steps = append(u.steps, func() { _ = os.RemoveAll(path) })
}

// removeEmpty is for directories other writers might share (podDir, hostPath
// parents): they are removed only if still empty.
func (u *undo) removeEmpty(path string) {
	u.steps = append(u.steps, func() { _ = os.Remove(path) })
}

// unmount is for a tmpfs this call mounted; it runs before the removal of
// its mount point, which was recorded earlier.
func (u *undo) unmount(path string) {
	u.steps = append(u.steps, func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
}

func (u *undo) run() {
	for i := len(u.steps) - 1; i >= 0; i-- {
		u.steps[i]()
	}
	u.steps = nil
}
