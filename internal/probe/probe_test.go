package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/header":
			if r.Header.Get("X-Probe") != "yes" {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	ctr := &corev1.Container{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	exec := func(_ context.Context, argv []string) (int, error) {
		if argv[0] == "broken" {
			return 0, errors.New("cannot start")
		}
		return len(argv) - 1, nil
	}
	get := func(path string, p intstr.IntOrString, headers ...corev1.HTTPHeader) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: p, HTTPHeaders: headers}}}
	}
	cases := []struct {
		name    string
		probe   *corev1.Probe
		wantErr string
	}{
		{"http 200", get("/ok", intstr.FromInt(port)), ""},
		{"named port", get("/ok", intstr.FromString("http")), ""},
		{"unknown named port", get("/ok", intstr.FromString("grpc")), `port "grpc" is not a named port of container c`},
		{"http 503", get("/down", intstr.FromInt(port)), "statuscode: 503"},
		{"headers sent", get("/header", intstr.FromInt(port), corev1.HTTPHeader{Name: "X-Probe", Value: "yes"}), ""},
		{"redirect followed", get("/redirect", intstr.FromInt(port)), ""},
		{"nothing listening", get("/", intstr.FromInt(closedPort)), "connection refused"},
		{"tcp open", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}}, ""},
		{"tcp closed", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(closedPort)}}}, "connection refused"},
		{"exec exit 0", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}, ""},
		{"exec exit 2", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"x", "a", "b"}}}}, "exited with 2"},
		{"exec cannot start", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"broken"}}}}, "cannot start"},
		{"grpc refused", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 1}}}, "grpc probes are not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Do(context.Background(), tc.probe, Target{PodIP: host, Container: ctr, Exec: exec})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected failure: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestLoopThresholds flips the probed state and checks that Loop reports only
// after the configured runs of successes and failures.
func TestLoopThresholds(t *testing.T) {
	var mu sync.Mutex
	results := []int{0, 0, 1, 0, 1, 1, 1, 0, 0} // exit codes, one per attempt
	attempt := 0
	exec := func(context.Context, []string) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		code := 1
		if attempt < len(results) {
			code = results[attempt]
		}
		attempt++
		return code, nil
	}
	p := &corev1.Probe{PeriodSeconds: 1, SuccessThreshold: 2, FailureThreshold: 3,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"x"}}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []bool
	done := make(chan struct{})
	go func() {
		Loop(ctx, p, Target{Exec: exec}, func(ok bool, _ error) {
			mu.Lock()
			got = append(got, ok)
			mu.Unlock()
		})
		close(done)
	}()
	// Attempts run once a second: the third report comes after the ninth.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 {
			break
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	// 0,0 -> success after 2; 1 -> one failure, not enough; 0 resets; 1,1,1 -> failure after 3;
	// 0,0 -> success after 2; then failures.
	want := []bool{true, false, true}
	if len(got) < 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("reports %v, want %v first", got, want)
	}
}
