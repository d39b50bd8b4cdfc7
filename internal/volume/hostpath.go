package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// checkHostPath runs the kubelet's hostPath type check without side
// effects; what a *OrCreate type still has to create is returned and done in
// the write phase.
func checkHostPath(hp *corev1.HostPathVolumeSource) (path string, create corev1.HostPathType, err error) {
	if hp.Path == "" {
		return "", "", errors.New("hostPath path is empty")
	}
	// A relative path would resolve against the agent's working directory,
	// which means nothing to the pod author.
	if !filepath.IsAbs(hp.Path) {
		return "", "", fmt.Errorf("hostPath path %q must be absolute", hp.Path)
	}
	path = filepath.Clean(hp.Path)
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}

	// Stat, not Lstat: like the kubelet, a symlink counts as what it points
	// to, since that is what the bind mount will expose.
	fi, statErr := os.Stat(path)
	exists := statErr == nil
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return "", "", fmt.Errorf("hostPath type check failed: %w", statErr)
	}
	var mode fs.FileMode
	if exists {
		mode = fi.Mode()
	}
	fail := func(want string) error {
		if !exists {
			return fmt.Errorf("hostPath type check failed: %s is not a %s (it does not exist)", path, want)
		}
		return fmt.Errorf("hostPath type check failed: %s is not a %s (it is a %s)", path, want, describe(mode))
	}

	switch typ {
	case corev1.HostPathUnset:
		// No check, as on the kubelet: the bind mount itself will fail if
		// the path is missing.
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			return path, typ, nil
		}
		if !mode.IsDir() {
			return "", "", fail("directory")
		}
	case corev1.HostPathDirectory:
		if !exists || !mode.IsDir() {
			return "", "", fail("directory")
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			// The kubelet does not create parents for FileOrCreate; saying
			// so up front beats a bare ENOENT from the write phase.
			parent := filepath.Dir(path)
			if pfi, err := os.Stat(parent); err != nil || !pfi.IsDir() {
				return "", "", fmt.Errorf("hostPath type check failed: cannot create %s: parent directory %s does not exist (FileOrCreate does not create parent directories)", path, parent)
			}
			return path, typ, nil
		}
		if !mode.IsRegular() {
			return "", "", fail("file")
		}
	case corev1.HostPathFile:
		if !exists || !mode.IsRegular() {
			return "", "", fail("file")
		}
	case corev1.HostPathSocket:
		if !exists || mode.Type() != fs.ModeSocket {
			return "", "", fail("socket")
		}
	case corev1.HostPathCharDev:
		if !exists || mode.Type() != fs.ModeDevice|fs.ModeCharDevice {
			return "", "", fail("character device")
		}
	case corev1.HostPathBlockDev:
		if !exists || mode.Type() != fs.ModeDevice {
			return "", "", fail("block device")
		}
	default:
		return "", "", fmt.Errorf("hostPath type %q is not valid (valid: \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice)", typ)
	}
	return path, "", nil
}

func createHostPath(path string, create corev1.HostPathType, u *undo) error {
	switch create {
	case corev1.HostPathDirectoryOrCreate:
		if err := mkdirAllTracked(path, 0o755, u); err != nil {
			return fmt.Errorf("hostPath: creating directory: %w", err)
		}
	case corev1.HostPathFileOrCreate:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			// Created by someone else since the check: fine if it is a file.
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("hostPath type check failed: %s is not a file", path)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("hostPath: creating file: %w", err)
		}
		u.steps = append(u.steps, func() { _ = os.Remove(path) })
		return f.Close()
	}
	return nil
}

// describe names a file type in the words of the hostPath type list.
func describe(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "file"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	}
	return "special file"
}
