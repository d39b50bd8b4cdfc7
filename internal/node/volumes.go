package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/volume"
)

// volumeResync is how often the configMap, secret, downwardAPI and projected
// volumes of a running pod are compared with their sources. The kubelet
// re-syncs every minute or so (plus its cache TTL); upstream tests wait for
// updates for minutes, users for seconds.
const volumeResync = 10 * time.Second

// metadataCheck is how often a pod's labels and annotations are compared with
// the last refresh, so that downwardAPI files follow them within a second. It
// only compares objects in memory.
const metadataCheck = time.Second

// tokens keeps the ServiceAccount tokens of every pod of this node between
// refreshes; its entries expire on their own when their pods are gone.
var tokens = volume.NewTokenCache()

func (w *podWorker) volumeOptions() volume.Options {
	return volume.Options{Client: w.a.client, NodeAllocatable: w.a.capacity, Tokens: tokens}
}

// refreshVolumes keeps the pod's API-data volumes up to date until ctx ends,
// as the kubelet does: each ConfigMap and Secret is read again every
// volumeResync, downwardAPI files follow label and annotation changes at
// once, and each changed volume is switched to its new contents atomically.
// A volume whose source cannot be read keeps its contents; the failure is
// reported as a FailedMount event when it first happens (and again when it
// changes), not every volumeResync. It stops once the pod's containers have
// all ended: no one reads the volumes then, and a finished pod may wait for
// its deletion for long (a Job's keeps its pods), each refresh a read of
// every ConfigMap and Secret it mounts.
func (w *podWorker) refreshVolumes(ctx context.Context) {
	last := w.snapshot()
	if !hasAPIVolumes(last) {
		return
	}
	resync := time.NewTicker(volumeResync)
	defer resync.Stop()
	meta := time.NewTicker(metadataCheck)
	defer meta.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.ended:
			return
		case <-resync.C:
		case <-meta.C:
			if cur := w.snapshot(); maps.Equal(cur.Labels, last.Labels) && maps.Equal(cur.Annotations, last.Annotations) {
				continue
			}
		}
		pod := w.snapshot()
		err := volume.Refresh(ctx, w.volumeOptions(), pod, w.dir)
		if ctx.Err() != nil {
			return // the pod is stopping: its volumes no longer matter
		}
		last = pod
		switch {
		case err == nil:
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			w.event(corev1.EventTypeWarning, "FailedMount", "refreshing volumes: "+lastErr)
		}
	}
}

func hasAPIVolumes(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil {
			return true
		}
	}
	return false
}

// teardownVolumes unmounts the pod's Memory emptyDirs before its directory is
// removed; the memory would stay taken otherwise.
func (w *podWorker) teardownVolumes() {
	if err := volume.Teardown(w.dir); err != nil {
		w.a.log.Warn("unmount pod volumes", "pod", w.key(), "err", err)
	}
}

// privateTmp returns the directory that is the container's /tmp for its
// current run: empty when the run starts, as an image's /tmp is in a new
// container, and the same for exec probes of that run. Earlier runs' are
// removed then.
func (w *podWorker) privateTmp(ctrDir string, s *ctrState) (string, error) {
	w.mu.Lock()
	run := strconv.Itoa(int(s.restarts))
	w.mu.Unlock()
	base := filepath.Join(ctrDir, "tmp")
	dir := filepath.Join(base, run)
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
		return dir, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.RemoveAll(base); err != nil {
		return "", fmt.Errorf("removing the previous runs' /tmp: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Mkdir is subject to the umask; /tmp must be writable by every uid and
	// sticky, so users cannot remove each other's files.
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		return "", err
	}
	return dir, nil
}
