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
	"strings"
	"time"
)

// The on-disk shape is the kubelet's (its AtomicWriter), because programs and
// tests written for Kubernetes rely on it: they watch "..data" to learn of an
// update, and read every key of one version through it.
//
//	<volume>/..2025_01_02_15_04_05.k3j2h1   a complete version of the contents
//	<volume>/..data -> ..2025_01_02_15_04_05.k3j2h1
//	<volume>/<key>  -> ..data/<key>          one symlink per top-level path
//
// An update writes a new version directory, points a temporary symlink at it
// and renames that over "..data": rename is atomic, so a reader resolving a
// path sees the old version or the new one, never a mix or a half-written
// file. Keys that the new version lacks lose their symlink afterwards, and the
// old version directory is removed last.
const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
	// versionLayout is followed by a UTC timestamp and a random suffix, as the
	// kubelet names them; only the ".." matters to readers.
	versionLayout = "..2006_01_02_15_04_05."
	// tmpPrefix starts with "..", which no item path may, so a temporary
	// symlink can never shadow a real key, and a crash's leftovers are
	// removed with the next update.
	tmpPrefix = "..outpost-tmp-"
)

// writeAtomic makes dir show exactly files. All access goes through an
// os.Root: the directory is bind-mounted into a container, and a container
// that managed to plant a symlink there must not make the agent read or write
// outside it. When dir already shows files (contents, modes and symlinks), it
// is left alone, so watchers only fire on real changes.
func writeAtomic(dir string, files payload) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	current, _ := root.Readlink(dataDirName)
	if current != "" && isVersionDir(current) {
		same, err := showsExactly(root, current, files)
		if err != nil {
			return fmt.Errorf("comparing %s with the new contents: %w", dir, err)
		}
		if same {
			return nil
		}
	}

	version, err := writeVersion(root, files)
	if err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	// A leftover from a crash between Symlink and Rename would make Symlink
	// fail; it points at a version nobody reads.
	if err := root.Remove(newDataDirName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale %s: %w", filepath.Join(dir, newDataDirName), err)
	}
	if err := root.Symlink(version, newDataDirName); err != nil {
		return fmt.Errorf("linking %s: %w", filepath.Join(dir, newDataDirName), err)
	}
	if err := root.Rename(newDataDirName, dataDirName); err != nil {
		return fmt.Errorf("switching %s to %s: %w", filepath.Join(dir, dataDirName), version, err)
	}

	wanted := topLevel(files)
	for name := range wanted {
		if err := linkVisible(root, name); err != nil {
			return fmt.Errorf("linking %s: %w", filepath.Join(dir, name), err)
		}
	}
	// Last: removed keys, older versions, and anything else that is not part
	// of the new version (files of the layout before versions, a crashed
	// writer's temporaries, whatever a container planted).
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range entries {
		n := e.Name()
		if n == dataDirName || n == version || wanted[n] {
			continue
		}
		if err := root.RemoveAll(n); err != nil {
			return fmt.Errorf("removing stale %s: %w", filepath.Join(dir, n), err)
		}
	}
	return nil
}

// isVersionDir tells a "..data" target written by writeAtomic from anything
// else a container may have pointed it at.
func isVersionDir(name string) bool {
	return strings.HasPrefix(name, "..") && name != dataDirName && name != newDataDirName && !strings.ContainsRune(name, '/')
}

// writeVersion writes files into a new version directory and returns its name.
func writeVersion(root *os.Root, files payload) (string, error) {
	version := time.Now().UTC().Format(versionLayout) + strconv.FormatUint(rand.Uint64(), 36)
	if err := root.Mkdir(version, 0o755); err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			_ = root.RemoveAll(version)
		}
	}()
	// Mkdir is subject to the agent's umask; containers of any uid read it.
	if err := root.Chmod(version, 0o755); err != nil {
		return "", err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if d := filepath.Dir(p); d != "." {
			if err := mkdirAllSearchable(root, version, d); err != nil {
				return "", err
			}
		}
		if err := writeNewFile(root, filepath.Join(version, p), files[p]); err != nil {
			return "", err
		}
	}
	ok = true
	return version, nil
}

// mkdirAllSearchable creates version/d and its parents with mode 0755
// whatever the umask, so that any container uid can reach the files.
func mkdirAllSearchable(root *os.Root, version, d string) error {
	var parts []string
	for ; d != "."; d = filepath.Dir(d) {
		parts = append(parts, d)
	}
	for i := len(parts) - 1; i >= 0; i-- {
		p := filepath.Join(version, parts[i])
		if err := root.Mkdir(p, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return err
		}
		if err := root.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func writeNewFile(root *os.Root, name string, f file) error {
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// No fsync: contents are regenerated from the API on every refresh, so
	// surviving a power cut is not worth slowing every pod start.
	_, werr := out.Write(f.data)
	// Fchmod, unlike the create mode, is not filtered by the umask.
	cerr := out.Chmod(f.mode.Perm())
	return errors.Join(werr, cerr, out.Close())
}

// topLevel returns the first path element of every file: those are the
// entries that get a symlink through "..data".
func topLevel(files payload) map[string]bool {
	out := make(map[string]bool, len(files))
	for p := range files {
		first, _, _ := strings.Cut(p, string(filepath.Separator))
		out[first] = true
	}
	return out
}

// linkVisible makes name a symlink to ..data/name. A wrong entry is replaced
// by renaming a new symlink over it, so a reader never finds the name missing;
// only a directory (the layout before versions, or planted) must be removed
// first, since a rename cannot replace a directory with a symlink.
func linkVisible(root *os.Root, name string) error {
	target := filepath.Join(dataDirName, name)
	fi, err := root.Lstat(name)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		if got, err := root.Readlink(name); err == nil && got == target {
			return nil
		}
	case err == nil && fi.IsDir():
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tmp := tmpPrefix + strconv.FormatUint(rand.Uint64(), 36)
	if err := root.Symlink(target, tmp); err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return nil
}

// showsExactly reports whether dir already shows files through version: the
// same contents and modes, no other file in the version, a correct symlink for
// every top-level name and nothing else beside them.
func showsExactly(root *os.Root, version string, files payload) (bool, error) {
	seen := 0
	err := fs.WalkDir(root.FS(), version, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(version, p)
		if err != nil {
			return err
		}
		want, ok := files[rel]
		if !ok || !d.Type().IsRegular() {
			return errDiffers
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != want.mode.Perm() {
			return errDiffers
		}
		data, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, want.data) {
			return errDiffers
		}
		seen++
		return nil
	})
	switch {
	case errors.Is(err, errDiffers), errors.Is(err, fs.ErrNotExist):
		// A version directory that vanished (or was never complete) is
		// simply rewritten.
		return false, nil
	case err != nil:
		return false, err
	case seen != len(files):
		return false, nil
	}
	wanted := topLevel(files)
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return false, err
	}
	links := 0
	for _, e := range entries {
		n := e.Name()
		if n == dataDirName || n == version {
			continue
		}
		if !wanted[n] || e.Type()&fs.ModeSymlink == 0 {
			return false, nil
		}
		if got, err := root.Readlink(n); err != nil || got != filepath.Join(dataDirName, n) {
			return false, nil
		}
		links++
	}
	return links == len(wanted), nil
}

var errDiffers = errors.New("differs")
