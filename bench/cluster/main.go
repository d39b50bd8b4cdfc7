// Command cluster measures the local cluster: seconds from `outpost cluster up`
// to a Ready node, pod create -> Running latency over many pods, and the
// memory of the whole cluster. It prints figures and ratios against targets
// and against a baseline measured in the same run (starting the same command
// as a plain host process). Run it with `make bench-cluster`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/clustertest"
)

func main() {
	pods := flag.Int("pods", 100, "pods to start")
	rate := flag.Float64("rate", 10, "pods created per second")
	flag.Parse()
	if err := run(*pods, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n int, rate float64) error {
	outpost, err := clustertest.Binary()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outpost-bench-")
	if err != nil {
		return err
	}
	slot, release, err := clustertest.Slot()
	if err != nil {
		return err
	}
	defer release()
	var cfg cluster.Config
	slot.Apply(&cfg)
	defer exec.Command(outpost, "cluster", "down", "--purge", "--dir", dir).Run()

	t0 := time.Now()
	up := exec.Command(outpost, "cluster", "up", "--dir", dir, "--api-port", strconv.Itoa(cfg.APIPort),
		"--pod-cidr", cfg.PodCIDR, "--service-cidr", cfg.ServiceCIDR, "--node-port-range", cfg.NodePortRange)
	if out, err := up.CombinedOutput(); err != nil {
		return fmt.Errorf("cluster up: %v\n%s", err, out)
	}
	upSeconds := time.Since(t0).Seconds()
	c, err := cluster.Load(dir)
	if err != nil {
		return err
	}
	rc, err := c.RESTConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	idleMB := memoryMB(dir)

	lat, err := podLatencies(client, n, rate)
	if err != nil {
		return err
	}
	busyMB := memoryMB(dir)
	base := baseline(20)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("cluster up -> node Ready:        %6.1f s    (target <= 15 s: %.2fx of target)\n", upSeconds, upSeconds/15)
	fmt.Printf("pod create -> Running, %d pods at %.0f/s:\n", len(lat), rate)
	fmt.Printf("  p50 %7.1f ms   (target <= 500 ms: %.2fx of target)\n", ms(p(0.5)), ms(p(0.5))/500)
	fmt.Printf("  p99 %7.1f ms\n  max %7.1f ms\n", ms(p(0.99)), ms(lat[len(lat)-1]))
	fmt.Printf("baseline, same command as a plain host process (fork+exec until running): %.2f ms; pod p50 / baseline = %.0fx\n",
		ms(base), ms(p(0.5))/ms(base))
	fmt.Printf("cluster memory (PSS of every process of the cluster, pods included): idle %.0f MB, with %d pods %.0f MB (%.1f MB a pod)\n",
		idleMB, len(lat), busyMB, (busyMB-idleMB)/float64(len(lat)))
	return nil
}

// podLatencies creates n pods at the given rate and returns, for each, the
// time from the create call to a watch event showing it Running.
func podLatencies(client kubernetes.Interface, n int, rate float64) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := "bench"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	for {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	running := map[string]time.Duration{}
	go func() {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("p%03d", i)
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64),
				Containers:                    []corev1.Container{{Name: "main", Image: "debian:12", Command: []string{"sleep", "3600"}}},
			}}
			mu.Lock()
			created[name] = time.Now()
			mu.Unlock()
			if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				fmt.Fprintln(os.Stderr, "create:", err)
			}
			time.Sleep(time.Duration(float64(time.Second) / rate))
		}
	}()
	for len(running) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, fmt.Errorf("watch closed after %d pods", len(running))
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || pod.Status.Phase != corev1.PodRunning {
				continue
			}
			mu.Lock()
			if _, seen := running[pod.Name]; !seen {
				running[pod.Name] = time.Since(created[pod.Name])
			}
			mu.Unlock()
		case <-ctx.Done():
			return nil, fmt.Errorf("only %d of %d pods Running after 5 minutes", len(running), n)
		}
	}
	var out []time.Duration
	for _, d := range running {
		out = append(out, d)
	}
	return out, nil
}

// baseline is the median time to start `sleep` as a plain child process.
func baseline(n int) time.Duration {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		cmd := exec.Command("sleep", "5")
		if err := cmd.Start(); err != nil {
			continue
		}
		ds = append(ds, time.Since(t))
		cmd.Process.Kill()
		cmd.Wait()
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// memoryMB sums the proportional set size of the cluster's processes (those
// naming its directory, pod inits included, and their descendants). PSS, not
// RSS: every container init maps the same outpost binary, and RSS would count
// those shared pages once per pod.
func memoryMB(dir string) float64 {
	entries, _ := os.ReadDir("/proc")
	ours := map[int]bool{}
	parent := map[int]int{}
	pss := map[int]int64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		ours[pid] = strings.Contains(string(cmdline), dir)
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "PPid:" {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
		rollup, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "smaps_rollup"))
		for _, line := range strings.Split(string(rollup), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				pss[pid], _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	var total int64
	for pid, kb := range pss {
		for p, depth := pid, 0; p > 1 && depth < 10; p, depth = parent[p], depth+1 {
			if ours[p] {
				total += kb
				break
			}
		}
	}
	return float64(total) / 1024
}
