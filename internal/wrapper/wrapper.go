// Package wrapper puts the outpost binary into pods whose containers run it
// as their wrapper (a training job's `outpost job run`), whatever image
// those containers use.
//
// Each node keeps one copy per binary, in a host directory named after the
// binary's sha256 (HostDir/<sha256>/outpost). The pod's install init
// container, which runs the outpost image, copies itself there when the
// node does not have that copy yet (written aside and renamed into place,
// so concurrent installers are safe and nobody runs half a file) and
// otherwise only notes the use; the wrapper's container mounts that one
// directory read-only at Dir. A copy per pod, in an emptyDir, cost every
// pod ~90 MiB of disk and a second or more of the node's I/O.
package wrapper

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

const (
	// Dir is where the wrapper's container sees the binary's folder,
	// read-only.
	Dir = "/outpost-wrapper"
	// Path is the binary in the wrapper's container.
	Path = Dir + "/outpost"
	// InstallName is the install init container's name.
	InstallName = "install"
	// VolumeName is the pod volume holding the node's copies.
	VolumeName = "outpost-wrapper"
	// HostDir is the node's folder of copies, one subfolder per binary.
	HostDir = "/var/lib/outpost/wrapper"
	// storeDir is where the install container sees HostDir.
	storeDir = "/outpost-wrapper-store"
	binName  = "outpost"
)

var self struct {
	once sync.Once
	key  string
	err  error
}

// Key is the sha256 (hex) of the running binary, which is the binary of
// the outpost image this process runs from: the operators that call Pod
// run the image whose binary the install container copies. Computed once.
func Key() (string, error) {
	self.once.Do(func() { self.key, self.err = KeyOf("/proc/self/exe") })
	return self.key, self.err
}

// KeyOf is the sha256 (hex) of the binary at path.
func KeyOf(path string) (string, error) { return hashFile(path) }

// Pod returns what a pod needs so that its containers can run Path: the
// install init container (image: the outpost image), the pod's volumes, and
// the mounts of each container that runs the wrapper. Should the running
// binary be unreadable (it never is on Linux), each pod gets a copy of its
// own in an emptyDir, as a fallback that needs no key.
func Pod(image string) (init corev1.Container, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	key, err := Key()
	if err != nil {
		return CopyPod(image)
	}
	return KeyedPod(image, key)
}

// KeyedPod is Pod for an image whose binary's sha256 is key, for a caller
// that does not run from that image (an operator in a test process).
func KeyedPod(image, key string) (init corev1.Container, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	init = corev1.Container{
		Name:  InstallName,
		Image: image,
		// No command: the outpost image's entrypoint is the binary.
		Args:         []string{"job", "install", path.Join(storeDir, key, binName)},
		VolumeMounts: []corev1.VolumeMount{{Name: VolumeName, MountPath: storeDir}},
		// The kubelet makes the node's folder root's, mode 0755; the
		// outpost image runs as an unprivileged user.
		SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(0)), RunAsGroup: new(int64(0))},
		// A failed copy explains itself on stderr.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	volumes = []corev1.Volume{{Name: VolumeName, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: HostDir, Type: new(corev1.HostPathDirectoryOrCreate),
	}}}}
	mounts = []corev1.VolumeMount{{Name: VolumeName, MountPath: Dir, SubPath: key, ReadOnly: true}}
	return init, volumes, mounts
}

// CopyPod is Pod with a copy of the binary per pod, in an emptyDir: for
// clusters whose policy refuses hostPath volumes or containers that run as
// root (Pod Security's baseline and restricted levels, OpenShift's SCCs).
func CopyPod(image string) (init corev1.Container, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	init = corev1.Container{
		Name:                     InstallName,
		Image:                    image,
		Args:                     []string{"job", "install", path.Join(storeDir, binName)},
		VolumeMounts:             []corev1.VolumeMount{{Name: VolumeName, MountPath: storeDir}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	volumes = []corev1.Volume{{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mounts = []corev1.VolumeMount{{Name: VolumeName, MountPath: Dir, ReadOnly: true}}
	return init, volumes, mounts
}

func hashFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("hashing the outpost binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing the outpost binary: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
