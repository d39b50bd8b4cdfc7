package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// tmpPrefix starts with "..", which no item path may, so a temporary file can
// never shadow a real one, and leftovers from a crash are pruned as stale.
const tmpPrefix = "..outpost-tmp-"

// syncDir makes dir hold exactly files. All access goes through an os.Root:
// the directory is bind-mounted into a container, and a container that
// managed to plant a symlink there must not make the agent write outside it.
func syncDir(dir string, files payload) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	dirs := map[string]bool{}
	for p := range files {
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}

	// Prune first, so a path that changes between file and directory (a key
	// "a" replaced by an item "a/b") is free before it is written. Readers
	// only ever miss files that are going away anyway.
	var stale []string
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if d.IsDir() && dirs[p] {
			return nil
		}
		if _, ok := files[p]; ok && d.Type().IsRegular() {
			return nil
		}
		stale = append(stale, p)
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scanning %s: %w", dir, err)
	}
	for _, p := range stale {
		if err := root.RemoveAll(p); err != nil {
			return fmt.Errorf("removing stale %s: %w", filepath.Join(dir, p), err)
		}
	}

	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if d := filepath.Dir(p); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", filepath.Join(dir, d), err)
			}
		}
		if err := writeFile(root, p, files[p]); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, p), err)
		}
	}
	// Subdirectories must be searchable by whatever uid the container runs
	// as, whatever the agent's umask.
	for d := range dirs {
		if err := root.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", filepath.Join(dir, d), err)
		}
	}
	return nil
}

// writeFile replaces name atomically: a reader sees the old file or the new
// one, never a partial write. Unchanged files are left alone so that their
// mtime and inotify watchers only fire on real changes.
func writeFile(root *os.Root, name string, f file) error {
	if fi, err := root.Lstat(name); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == f.mode.Perm() {
		if old, err := root.ReadFile(name); err == nil && bytes.Equal(old, f.data) {
			return nil
		}
	}
	tmp := filepath.Join(filepath.Dir(name), tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// No fsync: contents are regenerated from the API on every Prepare, so
	// surviving a power cut is not worth slowing every pod start.
	_, werr := out.Write(f.data)
	// Fchmod, unlike the create mode, is not filtered by the umask.
	cerr := out.Chmod(f.mode.Perm())
	if err := errors.Join(werr, cerr, out.Close()); err != nil {
		_ = root.Remove(tmp)
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return nil
}
