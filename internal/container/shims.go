package container

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Binaries are the host programs that image shims run.
type Binaries struct {
	// Outpost is this binary: the outpost image, and `outpost pause` for the
	// pause image.
	Outpost string
	// KubeBinDir holds the upstream binaries built by upstream/build.sh;
	// agnhost among them runs the agnhost image.
	KubeBinDir string
	// AppletDir is a directory of the node's own, filled with links to
	// busybox's applets for images whose programs are busybox's.
	AppletDir string
}

// AppletPath is where containers of images built on busybox find the
// applets the host lacks (nc, wget, nslookup, ...): the directory of links
// shown at this path is searched last in their PATH.
const AppletPath = "/.outpost/busybox"

// An imageShim says how an image that is never pulled runs on the host: the
// image's ENTRYPOINT and CMD, and which program of the host stands for a
// command of the image (its shell, for instance).
type imageShim struct {
	// name tells whether the shim is for an image, given the image's name
	// without registry, tag and digest.
	name       func(name string) bool
	entrypoint func(b Binaries) ([]string, error)
	cmd        []string
	// program returns the host argv prefix for a command word of the image,
	// or nil when the word runs as it is on the host.
	program func(word string, b Binaries) ([]string, error)
	// files are files of the image besides its programs: path in the
	// container -> path on the host.
	files func(b Binaries) map[string]string
	// applets: the image's other programs are busybox applets.
	applets bool
}

// ImageFiles are the files an image's shim shows its containers (read-only,
// at the paths the image has them), none for an image without a shim; the
// applet links (AppletPath) for images built on busybox.
func ImageFiles(image string, b Binaries) (map[string]string, error) {
	s := shimFor(image)
	if s == nil {
		return nil, nil
	}
	files := map[string]string{}
	if s.files != nil {
		files = s.files(b)
	}
	if s.applets {
		if err := linkApplets(b.AppletDir); err != nil {
			return nil, err
		}
		files[AppletPath] = b.AppletDir
	}
	return files, nil
}

// ImagePath is what an image's shim appends to its containers' PATH.
func ImagePath(image string) string {
	if s := shimFor(image); s != nil && s.applets {
		return AppletPath
	}
	return ""
}

// linkApplets makes dir hold a link to busybox for each of its applets
// (busybox runs the applet named by the link); links already there stay.
func linkApplets(dir string) error {
	if dir == "" {
		return errors.New("busybox applets: the node gave no directory for them")
	}
	bb, err := busybox()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for a := range bb.applets {
		err := os.Symlink(bb.path, filepath.Join(dir, a))
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("busybox applets: %w", err)
		}
	}
	return nil
}

// imageShims is the table of images with a meaning on the Outpost node. Any
// other image has neither entrypoint nor default command: its container runs
// its own command (or args) on the host.
//
//	image        entrypoint / default command      command words of the image
//	outpost*     the outpost binary                outpost
//	pause        outpost pause                     /pause
//	busybox*     CMD sh                            every busybox applet (sh, ls, ...)
//	agnhost      the agnhost binary, CMD pause     /agnhost, agnhost; sh (Alpine's busybox)
//	python*      CMD python3                       python, python3 (the host's python3)
//	httpd        CMD httpd-foreground              httpd-foreground: busybox httpd on port 80
var imageShims = []imageShim{
	{
		name:       is("outpost"),
		entrypoint: func(b Binaries) ([]string, error) { return []string{b.Outpost}, nil },
		program: func(word string, b Binaries) ([]string, error) {
			if word == "outpost" {
				return []string{b.Outpost}, nil
			}
			return nil, nil
		},
	},
	{
		// registry.k8s.io/pause: a process that only waits to be stopped.
		name:       is("pause"),
		entrypoint: func(b Binaries) ([]string, error) { return []string{b.Outpost, "pause"}, nil },
		program: func(word string, b Binaries) ([]string, error) {
			if word == "/pause" {
				return []string{b.Outpost, "pause"}, nil
			}
			return nil, nil
		},
	},
	{
		// busybox images: the image's shell and utilities are busybox
		// applets, so `sh -c` in such an image is busybox sh, not the host's.
		name:    func(n string) bool { return strings.HasPrefix(n, "busybox") },
		cmd:     []string{"sh"},
		program: imageShell(busyboxApplet(nil)),
		applets: true,
	},
	{
		// registry.k8s.io/e2e-test-images/agnhost: ENTRYPOINT ["/agnhost"],
		// CMD ["pause"], on Alpine, whose shell is busybox's.
		name: is("agnhost"),
		entrypoint: func(b Binaries) ([]string, error) {
			p, err := agnhost(b)
			return []string{p}, err
		},
		cmd:     []string{"pause"},
		applets: true, // Alpine's programs are busybox's
		// The serving certificate `netexec --tls-cert-file /localhost.crt` uses.
		files: func(b Binaries) map[string]string {
			dir := filepath.Join(b.KubeBinDir, "agnhost-files")
			return map[string]string{"/localhost.crt": filepath.Join(dir, "localhost.crt"), "/localhost.key": filepath.Join(dir, "localhost.key")}
		},
		program: func(word string, b Binaries) ([]string, error) {
			switch word {
			case "/agnhost", "agnhost", "/agnhost-2":
				p, err := agnhost(b)
				return []string{p}, err
			}
			return imageShell(func(string, Binaries) ([]string, error) { return nil, nil })(word, b)
		},
	},
	{
		name: func(n string) bool { return strings.HasPrefix(n, "python") },
		cmd:  []string{"python3"},
		program: func(word string, _ Binaries) ([]string, error) {
			switch path.Base(word) {
			case "python", "python3":
				p, err := exec.LookPath("python3")
				if err != nil {
					return nil, fmt.Errorf("the python image runs the host's python3, which is missing (scripts/deps.sh installs it): %w", err)
				}
				return []string{p}, nil
			}
			return nil, nil
		},
	},
	{
		// The Apache image serves /usr/local/apache2/htdocs on port 80 and
		// answers "It works!" out of the box. Busybox's httpd does the same
		// here: on the pod's own address (servers on the node bind their pod
		// IP), from the htdocs a volume mounts, else from a page like the
		// image's.
		name: is("httpd"),
		cmd:  []string{"httpd-foreground"},
		program: func(word string, b Binaries) ([]string, error) {
			if word != "httpd-foreground" {
				return busyboxApplet(map[string]bool{"sh": true})(word, b)
			}
			bb, err := busyboxApplet(nil)("sh", b)
			if err != nil {
				return nil, err
			}
			return append(bb, "-c", httpdScript, "httpd-foreground"), nil
		},
	},
}

// httpdScript runs busybox httpd in the foreground as the httpd image's
// httpd-foreground does.
const httpdScript = `set -e
docs=/usr/local/apache2/htdocs
if [ ! -d "$docs" ]; then
  docs=$(mktemp -d)
  echo '<html><body><h1>It works!</h1></body></html>' > "$docs/index.html"
fi
exec busybox httpd -f -p "${POD_IP:+$POD_IP:}80" -h "$docs"`

// is matches one image name exactly.
func is(want string) func(string) bool { return func(n string) bool { return n == want } }

// imageName strips registry, tag and digest: registry.k8s.io/pause:3.10 -> pause.
func imageName(image string) string {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	return path.Base(name)
}

func shimFor(image string) *imageShim {
	n := imageName(image)
	for i := range imageShims {
		if imageShims[i].name(n) {
			return &imageShims[i]
		}
	}
	return nil
}

func agnhost(b Binaries) (string, error) {
	p := filepath.Join(b.KubeBinDir, "agnhost")
	if b.KubeBinDir == "" {
		return "", errors.New("the agnhost image runs the agnhost binary of the upstream build, but the node was not told where it is (kubeBinDir)")
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the agnhost image runs %s, built by `make kube` (upstream/build.sh): %w", p, err)
	}
	return p, nil
}

// busybox finds Debian's busybox and its applets once per process.
var busybox = sync.OnceValues(func() (struct {
	path    string
	applets map[string]bool
}, error) {
	var bb struct {
		path    string
		applets map[string]bool
	}
	p, err := exec.LookPath("busybox")
	if err != nil {
		return bb, fmt.Errorf("busybox images run Debian's busybox, which is missing (scripts/deps.sh installs it): %w", err)
	}
	out, err := exec.Command(p, "--list").Output()
	if err != nil {
		return bb, fmt.Errorf("%s --list: %w", p, err)
	}
	bb.path, bb.applets = p, map[string]bool{}
	for _, a := range strings.Fields(string(out)) {
		bb.applets[a] = true
	}
	return bb, nil
})

// imageShell runs `sh` (and `ash`) of an image built on busybox as the
// host's bash in POSIX mode, other words as other does. Not Debian's busybox
// ash: it drops environment variables whose names are not shell identifiers
// (a ConfigMap key such as data-1 given with envFrom) before running a
// program, where the real image's in-process applets (`sh -c env`) still see
// them; bash passes them on, and runs what ash runs.
func imageShell(other func(word string, b Binaries) ([]string, error)) func(word string, b Binaries) ([]string, error) {
	return func(word string, b Binaries) ([]string, error) {
		switch path.Base(word) {
		case "sh", "ash":
			p, err := exec.LookPath("bash")
			if err != nil {
				return nil, fmt.Errorf("the shell of images built on busybox is the host's bash, which is missing: %w", err)
			}
			return []string{p, "--posix"}, nil
		}
		return other(word, b)
	}
}

// busyboxApplet maps a command word (sh, /bin/sh, ls, ...) to busybox running
// that applet; only applets in only, when only is not nil.
func busyboxApplet(only map[string]bool) func(word string, b Binaries) ([]string, error) {
	return func(word string, _ Binaries) ([]string, error) {
		applet := path.Base(word)
		if only != nil && !only[applet] {
			return nil, nil
		}
		bb, err := busybox()
		if err != nil {
			return nil, err
		}
		if applet == "busybox" {
			return []string{bb.path}, nil
		}
		if !bb.applets[applet] {
			return nil, nil
		}
		return []string{bb.path, applet}, nil
	}
}

// Pause is `outpost pause`, the pause image's program: it waits for SIGTERM
// or SIGINT and exits 0, as registry.k8s.io/pause does.
func Pause() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	os.Exit(0)
}
