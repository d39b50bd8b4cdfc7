package wrapper

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// unusedFor is how long a node's copy of another binary stays after its
// last install check before an install of a new binary removes it (unless a
// wrapper still runs it, see Hold): long enough for every pod created by an
// operator of the old binary to have started its containers.
const unusedFor = time.Hour

var keyPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Install is `outpost job install DST`, what the install init container
// runs. In a node's store (DST is <store>/<sha256>/outpost, see Pod) it
// copies the running binary there only when the node lacks that copy, after
// checking that the binary is the one the folder is named after; then it
// removes the store's copies of other binaries unused for a while. Any
// other DST gets a fresh copy. Either way DST appears whole or not at all.
// Trouble removing old copies is reported on warn; it fails nothing.
func Install(dst string, warn io.Writer) error {
	dir := filepath.Dir(dst)
	key := filepath.Base(dir)
	if !keyPattern.MatchString(key) {
		return copySelf(dst)
	}
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
		// Marks the copy as used, which keeps collect away from it.
		now := time.Now()
		if err := os.Chtimes(dir, now, now); err != nil {
			return fmt.Errorf("installing %s: %w", dst, err)
		}
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	own, err := hashFile("/proc/self/exe")
	if err != nil {
		return err
	}
	if own != key {
		return fmt.Errorf("installing %s: this outpost binary's sha256 is %s, not the %s the pod asks for: "+
			"the install container's image must be the outpost image of the operator that made the pod", dst, own, key)
	}
	if err := copySelf(dst); err != nil {
		return err
	}
	if err := collect(filepath.Dir(dir), key); err != nil {
		fmt.Fprintf(warn, "outpost job install: removing unused copies: %v\n", err)
	}
	return nil
}

// copySelf copies the running binary to dst (mode 0755): written aside in
// dst's folder and renamed into place, so that no container ever starts a
// half-written file, and two installers at once both succeed.
func copySelf(dst string) error {
	// /proc/self/exe opens the running binary even where its path is not
	// visible: on the local node the outpost image runs the host's binary,
	// whose folder (under /tmp, say) the container's own /tmp hides.
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		self, xerr := os.Executable()
		if xerr != nil {
			return fmt.Errorf("finding the running binary: %w", xerr)
		}
		if src, err = os.Open(self); err != nil {
			return err
		}
	}
	defer src.Close()
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	if _, err := io.Copy(tmp, src); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("installing %s: %w", dst, err)
	}
	return nil
}

// collect removes the store's copies other than keep's that no install
// has checked for unusedFor and that no wrapper holds, and temporary files
// that installers which died left there.
func collect(store, keep string) error {
	entries, err := os.ReadDir(store)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !keyPattern.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(store, e.Name())
		if e.Name() == keep {
			errs = append(errs, removeStaleTemps(dir))
			continue
		}
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < unusedFor {
			continue // gone meanwhile, or in use
		}
		errs = append(errs, removeUnheld(dir))
	}
	return errors.Join(errs...)
}

// removeUnheld removes a copy's folder unless a wrapper holds the copy.
func removeUnheld(dir string) error {
	f, err := os.Open(filepath.Join(dir, binName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// An install that never completed.
		return os.RemoveAll(dir)
	case err != nil:
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil
		}
		return fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return os.RemoveAll(dir)
}

func removeStaleTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "."+binName+".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > unusedFor {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// held keeps Hold's lock for as long as the process runs: closing the file
// would release it.
var held struct {
	mu sync.Mutex
	f  *os.File
}

// Hold marks the running binary as in use until this process ends, so that
// an install of another binary on the node does not remove it meanwhile
// (see collect), however long the process runs: a process that runs Path
// calls it first.
func Hold() error {
	held.mu.Lock()
	defer held.mu.Unlock()
	if held.f != nil {
		return nil
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("holding the outpost binary: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return fmt.Errorf("holding the outpost binary: %w", err)
	}
	held.f = f
	return nil
}
