package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/internal/image"
	"outpost.dev/outpost/internal/version"
	"outpost.dev/outpost/internal/workspace"
)

// TestMain lets a test run the CLI as its own process (to send it signals):
// the test binary, started with OUTPOST_CLI_TEST_MAIN=1, is the CLI.
func TestMain(m *testing.M) {
	if os.Getenv("OUTPOST_CLI_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// run executes the command line as Main does and returns what it printed.
// It fails the test if the command does not end within a minute: every case
// here must end quickly, and a hang is the defect some of them look for.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(rewriteMultiValue(args))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("outpost %s did not end within a minute", strings.Join(args, " "))
	}
	return out.String(), errOut.String(), err
}

// noWorkspace points the CLI at a login whose workspace cannot be reached,
// so that a case that wrongly gets as far as a request fails differently.
func noWorkspace(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("OUTPOST_URL", "https://127.0.0.1:1")
	t.Setenv("OUTPOST_TOKEN", "unused")
	t.Setenv("OUTPOST_CA_FILE", "")
}

var createArgs = []string{"k8s-extension", "create", "--name", "ml", "--cluster-name", "c1", "--resource-group", "rg",
	"--cluster-type", "connectedClusters", "--extension-type", "Microsoft.AzureML.Kubernetes"}

func TestProtectedSettingFileIsBounded(t *testing.T) {
	noWorkspace(t)
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, bytes.Repeat([]byte("A"), 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ file, want string }{
		{"/dev/zero", "sslCertPemFile=/dev/zero: not a regular file (a character device)"},
		{big, "sslCertPemFile=" + big + ": larger than 1 MiB"},
		{fifo, "sslCertPemFile=" + fifo + ": not a regular file (a FIFO)"},
		{dir, "sslCertPemFile=" + dir + ": not a regular file (a directory)"},
	}
	for _, tc := range cases {
		for _, cmd := range [][]string{createArgs, {"k8s-extension", "render"}} {
			args := append(append([]string{}, cmd...), "--config", "enableInference=True",
				"--config-protected", "sslCertPemFile="+tc.file, "sslKeyPemFile="+tc.file)
			_, _, err := run(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %s with sslCertPemFile=%s: %v, want %q", cmd[0], cmd[1], tc.file, err, tc.want)
			}
		}
	}
}

func TestEmptyRequiredFlagSaysRequired(t *testing.T) {
	noWorkspace(t)
	cases := [][]string{
		{"k8s-extension", "show", "--name", "", "--cluster-name", "c1", "--resource-group", "rg"},
		{"k8s-extension", "show", "--name", "ml", "--cluster-name", "c1", "--resource-group", " "},
		{"k8s-extension", "update", "--name", "ml", "--cluster-name", "", "--resource-group", "rg", "--config", "a=b"},
		{"k8s-extension", "delete", "--name", "", "--cluster-name", "c1", "--resource-group", "rg"},
		{"k8s-extension", "list", "--cluster-name", "c1", "--resource-group", ""},
		{"ml", "compute", "show", "--name", "", "--workspace-name", "w", "--resource-group", "rg"},
		{"ml", "compute", "attach", "--name", "c", "--workspace-name", "w", "--resource-group", "", "--type", "Kubernetes",
			"--resource-id", "/resourceGroups/rg/connectedClusters/c1"},
		{"connectedk8s", "show", "--name", "", "--resource-group", "rg"},
		{"connectedk8s", "delete", "--name", "c1", "--resource-group", ""},
	}
	for _, args := range cases {
		var empty string
		for i, a := range args {
			if strings.HasPrefix(a, "--") && i+1 < len(args) && strings.TrimSpace(args[i+1]) == "" {
				empty = a
			}
		}
		_, _, err := run(t, args...)
		if want := empty + " is required"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("outpost %q: %v, want %q", args, err, want)
		}
	}
}

// serve runs a workspace for the CLI to talk to, with a connected cluster c1
// in resource group rg, and logs the CLI in to it through the environment.
func serve(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- workspace.Serve(ctx, workspace.Options{Addr: "127.0.0.1:0", DataDir: dir, Heartbeat: time.Second,
			Ready: ready, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("workspace did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("workspace shutdown: %v", err)
		}
	})
	tok, err := os.ReadFile(workspace.AdminTokenFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("OUTPOST_URL", "https://"+addr)
	t.Setenv("OUTPOST_TOKEN", strings.TrimSpace(string(tok)))
	t.Setenv("OUTPOST_CA_FILE", workspace.CAFile(dir))
	ws, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Do(context.Background(), "PUT", clusterPath("rg", "c1"), map[string]string{}, nil); err != nil {
		t.Fatal(err)
	}
}

// The install* settings that install nothing say so on stderr when they are
// set, at create and at update, not only in render.
func TestCreateAndUpdateWarnAboutSettingsThatInstallNothing(t *testing.T) {
	serve(t)
	_, stderr, err := run(t, append(append([]string{}, createArgs...), "--no-wait", "-o", "json",
		"--config", "enableTraining=True", "installVolcano=True")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "warning: installVolcano=True: Outpost does not deploy Volcano") {
		t.Errorf("create with installVolcano=True printed on stderr:\n%s\nwant a warning that Volcano is not deployed", stderr)
	}
	_, stderr, err = run(t, "k8s-extension", "update", "--name", "ml", "--cluster-name", "c1", "--resource-group", "rg",
		"--no-wait", "-o", "json", "--config", "installPromOp=True", "installDcgmExporter=True")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"warning: installPromOp=True", "warning: installDcgmExporter=True", "warning: installVolcano=True"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("update printed on stderr:\n%s\nwant %q", stderr, want)
		}
	}
}

// An update whose answer is lost may have been stored: the CLI must say so
// and name the command that shows the extension, not suggest a blind retry.
func TestUpdateWithLostAnswerSaysItMayHaveBeenApplied(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Errorf("reading the request: %v", err)
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}))
	defer srv.Close()
	t.Setenv("OUTPOST_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("OUTPOST_URL", srv.URL)
	t.Setenv("OUTPOST_TOKEN", "t")
	t.Setenv("OUTPOST_CA_FILE", "")
	_, _, err := run(t, "k8s-extension", "update", "--name", "ml", "--cluster-name", "c1", "--resource-group", "rg",
		"--config", "installPromOp=True")
	want := "the request may have been applied; check with `outpost k8s-extension show --name ml --cluster-type connectedClusters --cluster-name c1 --resource-group rg`"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("update whose connection dropped: %v\nwant %q", err, want)
	}
}

// SIGTERM (or Ctrl-C) ends a CLI call that waits on the workspace at once,
// not when the request times out.
func TestSignalStopsARequestInFlight(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // never answers; the client must give up
	}))
	defer srv.Close()
	cmd := exec.Command(os.Args[0], "k8s-extension", "show", "--name", "ml", "--cluster-name", "c1", "--resource-group", "rg")
	cmd.Env = append(os.Environ(), "OUTPOST_CLI_TEST_MAIN=1", "OUTPOST_CONFIG="+filepath.Join(t.TempDir(), "config.json"),
		"OUTPOST_URL="+srv.URL, "OUTPOST_TOKEN=t", "OUTPOST_CA_FILE=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-arrived:
	case err := <-exited:
		t.Fatalf("the CLI ended before its request arrived: %v\n%s", err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "terminated signal received") {
			t.Fatalf("after SIGTERM: %v, stderr:\n%s\nwant exit code 1 and the request cancelled", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill() // the test fails anyway; Kill only cleans up
		t.Fatal("the CLI still waited on its request 15 s after SIGTERM")
	}
}

// The tarball `make image` writes is tagged with the image the CLI deploys.
func TestImageTagIsTheDeployedImage(t *testing.T) {
	tag, err := image.Tag(version.Version)
	if err != nil {
		t.Fatal(err)
	}
	if got := tag.String(); got != Image() {
		t.Fatalf("image tarball tagged %q, but connect deploys %q", got, Image())
	}
}

// --help tells what the install* settings really do.
func TestHelpSaysWhichSettingsInstallNothing(t *testing.T) {
	for _, sub := range []string{"create", "update"} {
		stdout, _, err := run(t, "k8s-extension", sub, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"installPromOp", "installVolcano", "installDcgmExporter"} {
			i := strings.Index(stdout, "  "+key+" ")
			if i < 0 || !strings.Contains(strings.SplitN(stdout[i:], "\n", 3)[1], "installs nothing") {
				t.Errorf("k8s-extension %s --help on %s:\n%s\nwant it to say it installs nothing", sub, key, stdout)
			}
		}
	}
}
