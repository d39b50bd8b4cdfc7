package podnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the processes that run inside the pods:
// PODNET_HELPER=serve NETWORK ADDR NAME listens and answers every connection
// (or datagram) with NAME; PODNET_HELPER=dial NETWORK ADDR prints what the
// server at ADDR answers.
func TestMain(m *testing.M) {
	switch os.Getenv("PODNET_HELPER") {
	case "serve":
		serve(os.Args[1], os.Args[2], os.Args[3])
	case "dial":
		dial(os.Args[1], os.Args[2])
	default:
		os.Exit(m.Run())
	}
}

func serve(network, addr, name string) {
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("listening", c.LocalAddr())
		buf := make([]byte, 64)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				os.Exit(1)
			}
			_, _ = c.WriteTo([]byte(name), from)
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("listening", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		// The client checks what it got: a write or close failing here
		// (the client gave up early) is its failure to report, not ours.
		_, _ = c.Write([]byte(name))
		_ = c.Close()
	}
}

func dial(network, addr string) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if strings.HasPrefix(network, "udp") {
		if _, err := c.Write([]byte("hi")); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Print(string(buf[:n]))
}

func openNode(t *testing.T) *Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroups and BPF programs need root")
	}
	n, err := Open(fmt.Sprintf("test-%d", os.Getpid()), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(n.Dir()); !os.IsNotExist(err) {
			t.Errorf("node cgroup %s still there after Close: %v", n.Dir(), err)
		}
	})
	return n
}

func addPod(t *testing.T, n *Node, id, ip string) *Pod {
	t.Helper()
	p, err := n.Add(id, netip.MustParseAddr(ip))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// helper starts the test binary as a helper inside pod p (on the host when p
// is nil).
func helper(p *Pod, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PODNET_HELPER="+args[0])
	cmd.Args = append([]string{os.Args[0]}, args[1:]...)
	if p != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(p.Cgroup().Fd())}
	}
	return cmd
}

// startServer runs a server in pod p and waits until it listens; it returns
// the address it listens on.
func startServer(t *testing.T, p *Pod, network, addr, name string) string {
	t.Helper()
	cmd := helper(p, "serve", network, addr, name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server %s on %s %s: %v", name, network, addr, err)
	}
	bound, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		t.Fatalf("server %s on %s %s: %s", name, network, addr, line)
	}
	return bound
}

// ask connects from pod p (the host when nil) to addr and returns the answer.
func ask(t *testing.T, p *Pod, network, addr string) string {
	t.Helper()
	out, err := helper(p, "dial", network, addr).Output()
	if err != nil {
		t.Errorf("dial %s %s: %v: %s", network, addr, err, out)
	}
	return string(out)
}

// freePort is a TCP and UDP port that nothing on 127.0.0.1 uses now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Pod addresses with a last byte above 127, so that a sign-extension slip in
// the programs' comparisons would show.
const (
	ipA = "127.245.0.201"
	ipB = "127.245.0.202"
	ipC = "127.245.0.203"
)

func TestServersBindingEveryAddressGetTheirPodIP(t *testing.T) {
	n := openNode(t)
	a, b, c := addPod(t, n, "a", ipA), addPod(t, n, "b", ipB), addPod(t, n, "c", ipC)
	port := freePort(t)
	// The host itself serves on 127.0.0.1:P: without the programs, the pods'
	// wildcard binds below would fail with "address already in use".
	startServer(t, nil, "tcp4", fmt.Sprintf("127.0.0.1:%d", port), "host")

	if got := startServer(t, a, "tcp4", fmt.Sprintf("0.0.0.0:%d", port), "a"); got != fmt.Sprintf("%s:%d", ipA, port) {
		t.Errorf("pod a's 0.0.0.0:%d listener is on %s, want its pod IP", port, got)
	}
	// Go's ":P" is an IPv6 socket on [::] that also takes IPv4; Go shows
	// the v4-mapped address it gets as the plain IPv4 one.
	if got := startServer(t, b, "tcp", fmt.Sprintf(":%d", port), "b"); got != fmt.Sprintf("%s:%d", ipB, port) {
		t.Errorf("pod b's :%d listener is on %s, want its pod IP", port, got)
	}

	// An IPV6_V6ONLY socket (Go's "tcp6" on [::]) cannot take an IPv4
	// address: it keeps [::], as it would in a network namespace.
	if got := startServer(t, c, "tcp6", fmt.Sprintf("[::]:%d", port), "c6"); got != fmt.Sprintf("[::]:%d", port) {
		t.Errorf("pod c's IPv6-only [::]:%d listener is on %s", port, got)
	}

	for _, tc := range []struct {
		from           *Pod
		who, net, addr string
		want           string
	}{
		{nil, "host", "tcp", fmt.Sprintf("%s:%d", ipA, port), "a"},
		{nil, "host", "tcp", fmt.Sprintf("%s:%d", ipB, port), "b"},
		{nil, "host", "tcp", fmt.Sprintf("127.0.0.1:%d", port), "host"},
		{nil, "host", "tcp", fmt.Sprintf("[::1]:%d", port), "c6"},
		{b, "pod b", "tcp", fmt.Sprintf("%s:%d", ipA, port), "a"},
		// A pod reaches its own server on localhost, by IPv4 or IPv6...
		{a, "pod a", "tcp", fmt.Sprintf("127.0.0.1:%d", port), "a"},
		{b, "pod b", "tcp", fmt.Sprintf("127.0.0.1:%d", port), "b"},
		{b, "pod b", "tcp", fmt.Sprintf("[::1]:%d", port), "b"},
		// ...and the host's when it serves nothing there.
		{c, "pod c", "tcp", fmt.Sprintf("127.0.0.1:%d", port), "host"},
	} {
		if got := ask(t, tc.from, tc.net, tc.addr); got != tc.want {
			t.Errorf("%s dialing %s reached %q, want %q", tc.who, tc.addr, got, tc.want)
		}
	}
}

func TestUDPServersBindingEveryAddress(t *testing.T) {
	n := openNode(t)
	a, b, c := addPod(t, n, "a", ipA), addPod(t, n, "b", ipB), addPod(t, n, "c", ipC)
	port := freePort(t)
	startServer(t, nil, "udp4", fmt.Sprintf("127.0.0.1:%d", port), "host")
	startServer(t, a, "udp4", fmt.Sprintf("0.0.0.0:%d", port), "a")
	startServer(t, b, "udp", fmt.Sprintf(":%d", port), "b")
	for _, tc := range []struct {
		from *Pod
		who  string
		addr string
		want string
	}{
		{nil, "host", fmt.Sprintf("%s:%d", ipA, port), "a"},
		{nil, "host", fmt.Sprintf("%s:%d", ipB, port), "b"},
		{a, "pod a", fmt.Sprintf("127.0.0.1:%d", port), "a"},
		{b, "pod b", fmt.Sprintf("[::1]:%d", port), "b"},
		{c, "pod c", fmt.Sprintf("127.0.0.1:%d", port), "host"},
	} {
		if got := ask(t, tc.from, "udp", tc.addr); got != tc.want {
			t.Errorf("%s sending to %s reached %q, want %q", tc.who, tc.addr, got, tc.want)
		}
	}
}

func TestClientBindsAndHostAreUntouched(t *testing.T) {
	n := openNode(t)
	a := addPod(t, n, "a", ipA)
	// A bind to port 0 is a client's: it keeps the address it asked for.
	cmd := helper(a, "serve", "tcp4", "0.0.0.0:0", "a")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "listening 0.0.0.0:") {
		t.Errorf("pod's bind to 0.0.0.0:0 gave %q, want 0.0.0.0", line)
	}
	// Processes outside the pod's cgroup keep the host's addresses.
	host, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if ip := host.Addr().(*net.TCPAddr).IP; !ip.IsUnspecified() {
		t.Errorf("host listener moved to %s", ip)
	}
}

func TestPodCgroupGoesAndRestartCleansStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups and BPF programs need root")
	}
	name, state := fmt.Sprintf("test-stale-%d", os.Getpid()), t.TempDir()
	n, err := Open(name, state)
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.Add("gone", netip.MustParseAddr(ipA))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.Dir(), "gone")); !os.IsNotExist(err) {
		t.Errorf("closed pod's cgroup still there: %v", err)
	}

	// A pod whose node died: its cgroup and a process in it remain.
	p, err = n.Add("stale", netip.MustParseAddr(ipA))
	if err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "600")
	sleeper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(p.Cgroup().Fd())}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()

	n2, err := Open(name, state)
	if err != nil {
		t.Fatal(err)
	}
	if n2.Dir() != n.Dir() {
		t.Fatalf("restarted node uses %s, not %s", n2.Dir(), n.Dir())
	}
	if _, err := os.Stat(filepath.Join(n.Dir(), "stale")); !os.IsNotExist(err) {
		t.Errorf("stale pod cgroup still there after the node's restart: %v", err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Error("the stale pod's process still runs after the node's restart")
	}
	// The first node's programs and links go with its process; close them here.
	for _, l := range p.links {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
	for _, prog := range p.progs {
		if err := prog.Close(); err != nil {
			t.Error(err)
		}
	}
	if err := p.fd.Close(); err != nil {
		t.Error(err)
	}
	if err := os.Remove(n.Dir()); err != nil {
		t.Error(err)
	}
}
