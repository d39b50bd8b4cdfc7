package node_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"outpost.dev/outpost/internal/clustertest"
)

// lastLine is the last line the pod's only container printed.
func lastLine(ctx context.Context, c kubernetes.Interface, ns, name string) (string, error) {
	out, err := c.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{TailLines: ptr.To[int64](1)}).DoRaw(ctx)
	return strings.TrimSpace(string(out)), err
}

func TestVolumesFollowTheirSources(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data: map[string]string{"mode": "fast", "extra": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The container keeps reading its files, as a program that reloads its
	// configuration does; /sub/mode is a subPath mount, which stays as it
	// was when the container started (as on the kubelet).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "reader", Labels: map[string]string{"tier": "web"}}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "main", Image: "debian:12",
			Command: []string{"sh", "-c", `while true; do
				echo "mode=$(cat /config/mode) keys=$(ls /config | tr '\n' ,) labels=$(cat /info/labels) sub=$(cat /sub/mode)"
				sleep 0.3; done`},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "cfg", MountPath: "/config"},
				{Name: "cfg", MountPath: "/sub/mode", SubPath: "mode"},
				{Name: "info", MountPath: "/info"},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
			{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
			}}},
		},
	}}
	createPod(t, c, ns, pod)
	const before = `mode=fast keys=extra,mode, labels=tier="web" sub=fast`
	clustertest.Eventually(t, 30*time.Second, "the container reads its volumes", func() error {
		if line, err := lastLine(ctx, c, ns, "reader"); err != nil || line != before {
			return fmt.Errorf("last line %q (%v), want %q", line, err, before)
		}
		return nil
	})

	// A key changes and one goes away: the node re-reads ConfigMaps every
	// 10 s.
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"mode": "slow"}
	if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	const updated = `mode=slow keys=mode, labels=tier="web" sub=fast`
	clustertest.Eventually(t, 30*time.Second, "the running container sees the new ConfigMap", func() error {
		if line, err := lastLine(ctx, c, ns, "reader"); err != nil || line != updated {
			return fmt.Errorf("last line %q (%v), want %q", line, err, updated)
		}
		return nil
	})

	// Labels are followed within a second.
	patch := []byte(`{"metadata":{"labels":{"tier":"db"}}}`)
	if _, err := c.CoreV1().Pods(ns).Patch(ctx, "reader", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	const relabeled = `mode=slow keys=mode, labels=tier="db" sub=fast`
	clustertest.Eventually(t, 5*time.Second, "the running container sees its new labels", func() error {
		if line, err := lastLine(ctx, c, ns, "reader"); err != nil || line != relabeled {
			return fmt.Errorf("last line %q (%v), want %q", line, err, relabeled)
		}
		return nil
	})
}

func TestEachContainerHasItsOwnTmp(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	// Unique, so that a failure of this test cannot clobber a host file.
	health := "/tmp/health-" + ns
	t.Cleanup(func() { _ = os.Remove(health) })

	// The first pod keeps its file and keeps checking it is still its own.
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "first"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{shell("main", fmt.Sprintf(
			`echo first > %[1]s; while true; do echo "$(cat %[1]s) $(stat -c %%a /tmp)"; sleep 0.3; done`, health))},
	}})
	clustertest.Eventually(t, 30*time.Second, "the first pod writes its /tmp", func() error {
		if line, err := lastLine(ctx, c, ns, "first"); err != nil || line != "first 1777" {
			return fmt.Errorf("last line %q (%v), want %q", line, err, "first 1777")
		}
		return nil
	})

	// The second pod must not see it; its init container's /tmp is its own
	// too, but an emptyDir mounted below /tmp is shared as a volume is.
	cache := []corev1.VolumeMount{{Name: "cache", MountPath: "/tmp/cache"}}
	initC := shell("init", fmt.Sprintf(`echo init > /tmp/init-only; echo shared > /tmp/cache/x; test ! -e %s`, health))
	initC.VolumeMounts = cache
	mainC := shell("main", fmt.Sprintf(`echo second > %[1]s; echo "$(cat %[1]s) $(cat /tmp/cache/x) $(ls /tmp | tr '\n' ,)"`, health))
	mainC.VolumeMounts = cache
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "second"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{initC},
		Containers:     []corev1.Container{mainC},
		Volumes:        []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}})
	p := waitPod(t, c, ns, "second", 30*time.Second, "finished", finished)
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("second pod %s (its init container saw the first pod's file?): %+v", p.Status.Phase, p.Status.InitContainerStatuses)
	}
	want := fmt.Sprintf("second shared cache,health-%s,", ns)
	if line, err := lastLine(ctx, c, ns, "second"); err != nil || line != want {
		t.Errorf("second pod printed %q (%v), want %q", line, err, want)
	}
	if line, err := lastLine(ctx, c, ns, "first"); err != nil || line != "first 1777" {
		t.Errorf("first pod now reads %q (%v), want its own file", line, err)
	}
	if _, err := os.Stat(health); !os.IsNotExist(err) {
		t.Errorf("%s exists on the host (err %v): pods wrote the host's /tmp", health, err)
	}
}

func TestMemoryEmptyDirIsTmpfs(t *testing.T) {
	ns, c := namespace(t)
	ctx := context.Background()
	size := resource.MustParse("64Mi")
	createPod(t, c, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "mem"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "main", Image: "debian:12",
			Command:      []string{"sh", "-c", `stat -f -c '%T %b %S' /cache; echo kept > /cache/f; sleep 3600`},
			VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}},
		}},
		Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: &size,
		}}}},
	}})
	p := waitPod(t, c, ns, "mem", 30*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	clustertest.Eventually(t, 10*time.Second, "the container reports its /cache", func() error {
		// 64 MiB in 4 KiB blocks.
		if line, err := lastLine(ctx, c, ns, "mem"); err != nil || line != "tmpfs 16384 4096" {
			return fmt.Errorf("stat -f printed %q (%v), want %q", line, err, "tmpfs 16384 4096")
		}
		return nil
	})

	// The tmpfs belongs to the pod: deleting it gives the memory back.
	mounted := func() (bool, error) {
		info, err := os.ReadFile("/proc/self/mountinfo")
		return bytes.Contains(info, []byte(string(p.UID)+"/volumes/cache ")), err
	}
	if ok, err := mounted(); err != nil || !ok {
		t.Fatalf("no tmpfs of the pod in the host's mount table (%v)", err)
	}
	if err := c.CoreV1().Pods(ns).Delete(ctx, "mem", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "the pod's tmpfs is unmounted", func() error {
		if ok, err := mounted(); err != nil || ok {
			return fmt.Errorf("still mounted (%v)", err)
		}
		return nil
	})
}
