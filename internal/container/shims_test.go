package container_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/internal/container"
)

// TestImageShims checks, image by image, the command line that the node runs
// for what a pod spec says: the image's default command when the spec gives
// none, and the host stand-in of the image's programs.
func TestImageShims(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox images need Debian's busybox (scripts/deps.sh): %v", err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("the shell of images built on busybox is bash: %v", err)
	}
	python3, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python images need python3 (scripts/deps.sh): %v", err)
	}
	kubeBin := t.TempDir()
	agnhost := filepath.Join(kubeBin, "agnhost")
	if err := os.WriteFile(agnhost, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bins := container.Binaries{Outpost: "/opt/outpost", KubeBinDir: kubeBin}
	env := []string{"POD_IP=127.244.0.7", "PORT=8080"}
	cases := []struct {
		name    string
		c       corev1.Container
		want    []string
		wantErr string
	}{
		{"pause image", corev1.Container{Image: "registry.k8s.io/pause:3.10.1"},
			[]string{"/opt/outpost", "pause"}, ""},
		{"pause image by digest", corev1.Container{Image: "registry.k8s.io/pause@sha256:0123"},
			[]string{"/opt/outpost", "pause"}, ""},
		{"busybox default shell", corev1.Container{Image: "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"},
			[]string{bash, "--posix"}, ""},
		{"busybox sh -c", corev1.Container{Image: "busybox", Command: []string{"sh", "-c", "echo $(PORT)"}},
			[]string{bash, "--posix", "-c", "echo 8080"}, ""},
		{"busybox /bin/sh in args", corev1.Container{Image: "busybox:1.36", Args: []string{"/bin/sh", "-c", "true"}},
			[]string{bash, "--posix", "-c", "true"}, ""},
		{"busybox applet", corev1.Container{Image: "docker.io/library/busybox:latest", Command: []string{"sleep", "10"}},
			[]string{busybox, "sleep", "10"}, ""},
		{"busybox non-applet stays on the host", corev1.Container{Image: "busybox", Command: []string{"/opt/tool", "x"}},
			[]string{"/opt/tool", "x"}, ""},
		{"agnhost subcommand in args", corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.56", Args: []string{"netexec", "--http-port=$(PORT)"}},
			[]string{agnhost, "netexec", "--http-port=8080"}, ""},
		{"agnhost default", corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.56"},
			[]string{agnhost, "pause"}, ""},
		{"agnhost /agnhost command", corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.56", Command: []string{"/agnhost", "serve-hostname"}},
			[]string{agnhost, "serve-hostname"}, ""},
		{"agnhost shell", corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.56", Command: []string{"/bin/sh", "-c", "true"}},
			[]string{bash, "--posix", "-c", "true"}, ""},
		{"python default", corev1.Container{Image: "python:3.11-slim"},
			[]string{python3}, ""},
		{"python command", corev1.Container{Image: "python:3.12", Command: []string{"python", "-m", "http.server"}},
			[]string{python3, "-m", "http.server"}, ""},
		{"httpd default", corev1.Container{Image: "registry.k8s.io/e2e-test-images/httpd:2.4.38-4"},
			[]string{busybox, "sh", "-c", "*", "httpd-foreground"}, ""},
		{"outpost image", corev1.Container{Image: "outpost:dev", Args: []string{"version"}},
			[]string{"/opt/outpost", "version"}, ""},
		{"other image keeps its command", corev1.Container{Image: "nginx:1.25", Command: []string{"sh", "-c", "true"}},
			[]string{"sh", "-c", "true"}, ""},
		{"other image without command", corev1.Container{Image: "nginx:1.25"},
			nil, `image "nginx:1.25": images are not pulled on the Outpost node`},
		{"agnhost not built", corev1.Container{Image: "agnhost:2.56", Args: []string{"pause"}},
			nil, "make kube"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bins
			if tc.name == "agnhost not built" {
				b.KubeBinDir = t.TempDir()
			}
			argv, err := container.Argv(&tc.c, env, b)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("argv %q, error %v, want an error with %q", argv, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(argv) != len(tc.want) {
				t.Fatalf("argv %q, want %q", argv, tc.want)
			}
			for i := range argv {
				if tc.want[i] != "*" && argv[i] != tc.want[i] {
					t.Fatalf("argv %q, want %q", argv, tc.want)
				}
			}
		})
	}
}
