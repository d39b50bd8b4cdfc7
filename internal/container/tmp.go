package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// mountTmp gives the container its own /tmp, as its image would: the host
// directory s.Tmp, which the node makes empty, sticky and world-writable,
// bound over the mirror of the host's /tmp. It runs before the volumes are
// mounted, so a volume at /tmp or below still wins; and since /tmp is then
// ours, mount targets made below it are made in the private directory, never
// in the host's /tmp.
func (s *Spec) mountTmp() error {
	target := filepath.Join(s.Root, "tmp")
	fi, err := os.Lstat(target)
	switch {
	case err == nil && fi.IsDir():
	case err == nil:
		// A symlink mirrored from the host: it lives on the root's own
		// tmpfs, so replacing it changes nothing of the host.
		if err := os.Remove(target); err != nil {
			return err
		}
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
	default:
		return err
	}
	if err := unix.Mount(s.Tmp, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", s.Tmp, err)
	}
	if s.ours == nil {
		s.ours = map[string]bool{"/": true}
	}
	s.ours["/tmp"] = true
	return nil
}
