package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// memoryVolumeSize is the size of a Memory emptyDir's tmpfs, computed as the
// kubelet does (SizeMemoryBackedVolumes): the node's allocatable memory,
// lowered to the pod's memory limit when every container declares one, lowered
// to the volume's sizeLimit when that is smaller still. 0 means no size option
// (the kernel's default of half the machine's memory), which only happens when
// none of the three is known.
func memoryVolumeSize(opts Options, pod *corev1.Pod, ed *corev1.EmptyDirVolumeSource) int64 {
	var size int64
	if q, ok := opts.NodeAllocatable[corev1.ResourceMemory]; ok && q.Sign() > 0 {
		size = q.Value()
	}
	if limit := podMemoryLimit(pod); limit > 0 && (size == 0 || limit < size) {
		size = limit
	}
	if ed.SizeLimit != nil && ed.SizeLimit.Sign() > 0 && (size == 0 || ed.SizeLimit.Value() < size) {
		size = ed.SizeLimit.Value()
	}
	return size
}

// podMemoryLimit is the pod's memory limit as the kubelet sizes its cgroup:
// the sum of its containers' limits, at least the largest init container's,
// plus the pod overhead; 0 when a container has no memory limit.
func podMemoryLimit(pod *corev1.Pod) int64 {
	limitOf := func(c *corev1.Container) (int64, bool) {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		return q.Value(), ok && q.Sign() > 0
	}
	var sum int64
	for i := range pod.Spec.Containers {
		l, ok := limitOf(&pod.Spec.Containers[i])
		if !ok {
			return 0
		}
		sum += l
	}
	for i := range pod.Spec.InitContainers {
		l, ok := limitOf(&pod.Spec.InitContainers[i])
		if !ok {
			return 0
		}
		sum = max(sum, l)
	}
	if q, ok := pod.Spec.Overhead[corev1.ResourceMemory]; ok {
		sum += q.Value()
	}
	return sum
}

// mountTmpfs mounts a tmpfs of size bytes on dir, unless one is there already
// (agent restart). It is mounted in the agent's mount namespace, before any
// container starts, so that every container of the pod binds the same one.
func mountTmpfs(dir string, size int64, u *undo) error {
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	opts := "mode=0777"
	if size > 0 {
		opts += ",size=" + strconv.FormatInt(size, 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs (%s) on %s: %w", opts, dir, err)
	}
	u.unmount(dir)
	return nil
}

// isMountPoint asks the kernel whether path is the root of a mount; unlike
// comparing device numbers with the parent, this also holds for a tmpfs on
// a tmpfs.
func isMountPoint(path string) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return false, &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("statx %s: this kernel does not report mount points (Linux 5.8 or later is needed)", path)
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// Teardown unmounts what Prepare mounted for the pod (Memory emptyDirs), so
// that the pod directory can be removed and the memory is given back. It is
// safe to call for a pod whose volumes were never prepared or are already
// torn down.
func Teardown(podDir string) error {
	volRoot := filepath.Join(podDir, "volumes")
	entries, err := os.ReadDir(volRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(volRoot, e.Name())
		mounted, err := isMountPoint(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !mounted {
			continue
		}
		// Detach: a container that is still being torn down may hold it open;
		// the memory is freed when the last user is gone.
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
