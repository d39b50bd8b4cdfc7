package container

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// makeRootReadOnly honours readOnlyRootFilesystem: every mount of the
// container's root (the mirrored host directories and what lies below them)
// becomes read-only, in the container's mount namespace only; then each
// volume gets back the mode it asked for, in the order they were mounted so
// that a volume inside another keeps its own. /dev and /proc stay writable,
// as a container runtime gives a read-only container its own /dev and /proc.
func (s *Spec) makeRootReadOnly() error {
	ro := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	rw := &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(-1, s.Root, unix.AT_RECURSIVE, ro); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	for _, dir := range []string{"dev", "proc"} {
		if err := unix.MountSetattr(-1, filepath.Join(s.Root, dir), unix.AT_RECURSIVE, rw); err != nil {
			return fmt.Errorf("writable /%s: %w", dir, err)
		}
	}
	for _, m := range s.Mounts {
		target, err := s.makeTarget(m.Target, true)
		if err != nil {
			return err
		}
		attr, flags := rw, uint(unix.AT_RECURSIVE)
		if m.ReadOnly {
			// As bind does it: the volume's own mount, not those below it.
			attr, flags = ro, 0
		}
		if err := unix.MountSetattr(-1, target, flags, attr); err != nil {
			return fmt.Errorf("mode of volume at %s: %w", m.Target, err)
		}
	}
	return nil
}
