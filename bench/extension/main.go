// Command extension measures `outpost k8s-extension create` -> Installed on
// the local cluster for each of the seed's scenarios, with a fresh cluster, a
// workspace and a connected agent, all started here. It prints seconds per
// scenario against the 10 s target, and `connectedk8s connect` -> Connected
// as the baseline of a round trip through the agent. Run `make bench-extension`.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"outpost.dev/outpost/internal/cluster"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/pki"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	bin, err := clustertest.Binary()
	if err != nil {
		return err
	}
	kubeBin, err := cluster.FindKubeBinDir(os.Getenv("OUTPOST_KUBE_BIN_DIR"), bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outpost-ext-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	slot, release, err := clustertest.Slot()
	if err != nil {
		return err
	}
	defer release()
	cfg := &cluster.Config{Dir: filepath.Join(dir, "cluster"), KubeBinDir: kubeBin, Outpost: bin}
	slot.Apply(cfg)
	ctx := context.Background()
	if err := cluster.Up(ctx, cfg, os.Stderr); err != nil {
		return err
	}
	defer cluster.Down(cfg, true, os.Stderr)
	rc, err := cfg.RESTConfig()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	data := filepath.Join(dir, "workspace")
	ws := exec.Command(bin, "workspace", "serve", "--addr", addr, "--data-dir", data)
	if err := ws.Start(); err != nil {
		return err
	}
	defer func() { ws.Process.Kill(); ws.Wait() }()
	env := append(os.Environ(), "OUTPOST_CONFIG="+filepath.Join(dir, "login.json"), "KUBECONFIG="+cfg.KubeconfigPath())
	outpost := func(args ...string) error {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var tok []byte
	for i := 0; i < 100; i++ {
		if tok, err = os.ReadFile(filepath.Join(data, "admin-token")); err == nil {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := outpost("login", "--url", "https://"+addr, "--token", strings.TrimSpace(string(tok)), "--ca-file", filepath.Join(data, "tls", "ca.crt")); err != nil {
		return err
	}
	t := time.Now()
	if err := outpost("connectedk8s", "connect", "-n", "bench", "-g", "rg"); err != nil {
		return err
	}
	fmt.Printf("baseline: connectedk8s connect -> Connected %.1f s\n", time.Since(t).Seconds())

	ca, err := pki.NewCA("bench-ca")
	if err != nil {
		return err
	}
	if err := ca.Issue(pki.Request{CommonName: "scoring.local", DNSNames: []string{"scoring.local"}, Server: true},
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err != nil {
		return err
	}
	pems := []string{"--config-protected", "sslCertPemFile=" + filepath.Join(dir, "cert.pem"), "sslKeyPemFile=" + filepath.Join(dir, "key.pem")}
	scenarios := []struct {
		name     string
		settings []string
	}{
		{"training", []string{"--config", "enableTraining=True"}},
		{"inference over HTTP", []string{"--config", "enableInference=True", "allowInsecureConnections=True"}},
		{"inference over HTTPS", append([]string{"--config", "enableInference=True"}, pems...)},
		{"inference with NodePort", []string{"--config", "enableInference=True", "inferenceRouterServiceType=NodePort", "allowInsecureConnections=True"}},
		{"training and inference", append([]string{"--config", "enableTraining=True", "enableInference=True"}, pems...)},
	}
	for _, sc := range scenarios {
		args := append([]string{"k8s-extension", "create", "--name", "ml", "--extension-type", "Microsoft.AzureML.Kubernetes",
			"--cluster-type", "connectedClusters", "--cluster-name", "bench", "--resource-group", "rg"}, sc.settings...)
		t := time.Now()
		if err := outpost(args...); err != nil {
			return err
		}
		s := time.Since(t).Seconds()
		fmt.Printf("create -> Installed, %-24s %5.1f s  (target <= 10 s: %.2fx of target)\n", sc.name+":", s, s/10)
		if err := outpost("k8s-extension", "delete", "--name", "ml", "--cluster-type", "connectedClusters", "--cluster-name", "bench", "--resource-group", "rg"); err != nil {
			return err
		}
		for {
			_, err := kube.CoreV1().Namespaces().Get(ctx, "azureml", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
