// Package studio drives the Studio in a real browser (Debian's headless
// Chromium, through chromedp) against a workspace served by the outpost
// binary and the local cluster: sign in, attach the cluster through the
// seed's "+ New > Kubernetes" form and watch it reach Succeeded, see why an
// attach failed, look at the cluster and its extension, follow a running
// job's log, call an endpoint from the Test box, and make sure nothing
// changes without a session and its CSRF token. Every page is saved as a
// screenshot in $OUTPOST_SCREENSHOTS (default .cache/screenshots).
package studio

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/clustertest"
	"outpost.dev/outpost/internal/pki"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

const (
	rg = "rg"
	ws = "ws"
	// compute is the name examples/endpoints/endpoint.yml runs on.
	compute = "local-compute"
)

// repoRoot is the repository, for examples/ and .cache/.
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// fixture is a workspace with the local cluster connected and the ML
// extension installed for training and inference (the router over HTTPS on
// a node port), nothing attached yet, and a browser.
type fixture struct {
	*clustertest.Workspace
	t        *testing.T
	base     string // https://127.0.0.1:PORT
	root     string
	shots    string
	examples string // a copy of examples/endpoints with the model trained
	ctx      context.Context
	// pageErrors are the browser's script exceptions and console errors.
	pageErrors clustertest.Log
}

func setup(t *testing.T) *fixture {
	w := clustertest.StartWorkspace(t, time.Second)
	f := &fixture{Workspace: w, t: t, base: "https://" + w.Addr, root: repoRoot(t)}
	f.shots = os.Getenv("OUTPOST_SCREENSHOTS")
	if f.shots == "" {
		f.shots = filepath.Join(f.root, ".cache", "screenshots")
	}
	if err := os.MkdirAll(f.shots, 0o755); err != nil {
		t.Fatal(err)
	}

	certs := t.TempDir()
	ca, err := pki.NewCA("scoring-ca")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFiles(filepath.Join(certs, "ca.pem"), filepath.Join(certs, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem")
	if err := ca.Issue(pki.Request{CommonName: "scoring.local", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}, cert, key); err != nil {
		t.Fatal(err)
	}
	w.Must("connectedk8s", "connect", "--name", "c1", "--resource-group", rg)
	t.Cleanup(func() {
		w.Outpost("connectedk8s", "delete", "--name", "c1", "--resource-group", rg, "--yes")
	})
	w.Must("k8s-extension", "create", "--name", "arcml-extension", "--extension-type", "Microsoft.AzureML.Kubernetes",
		"--cluster-type", "connectedClusters", "--cluster-name", "c1", "--resource-group", rg, "--scope", "cluster",
		"--config", "enableTraining=True", "enableInference=True", "inferenceRouterServiceType=NodePort",
		"--config-protected", "sslCertPemFile="+cert, "sslKeyPemFile="+key)
	f.ctx = f.browser()
	return f
}

// browser starts headless Chromium trusting the workspace's certificate
// (by its public key's hash: no certificate check is turned off) and
// returns its context.
func (f *fixture) browser() context.Context {
	t := f.t
	data, err := os.ReadFile(filepath.Join(f.Dir, "data", "tls", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("server.crt holds no PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.WindowSize(1280, 860),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Script exceptions and console errors (Content-Security-Policy
	// violations among them) are kept for the test to check; failed loads
	// are not, as some pages answer 401 or 403 on purpose.
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the browser's log: %v", err)
	}
	entries, exceptions := chromedp.Events(ctx, cdplog.EntryAdded), chromedp.Events(ctx, cdpruntime.ExceptionThrown)
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
				// clustertest.Log's Write never fails.
				_, _ = fmt.Fprintf(&f.pageErrors, "%s: %s (%s:%d)\n", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL, ev.Entry.LineNumber)
			}
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			// clustertest.Log's Write never fails.
			_, _ = fmt.Fprintf(&f.pageErrors, "exception: %s (%s:%d)\n", msg, d.URL, d.LineNumber)
		}
	}()
	// Confirmations (detach, cancel) are accepted, as a user would.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return // the browser is gone
			}
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				t.Logf("accepting a dialog: %v", err)
			}
		}
	}()
	return ctx
}

// step is one browser action that yields nothing.
type step = chromedp.Action[chromedp.Void]

// run runs browser steps, failing the test with a screenshot and the
// page's text when they fail or take over timeout.
func (f *fixture) run(t *testing.T, timeout time.Duration, what string, steps ...step) {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		f.fail(t, what, err)
	}
}

func (f *fixture) fail(t *testing.T, what string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	// Only for the failure's message: what fails here is reported as
	// empty.
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	f.shot(t, "FAILED-"+strings.ReplaceAll(t.Name(), "/", "-"))
	t.Fatalf("%s: %v\nat %s:\n%s\n--- workspace log (end) ---\n%s", what, err, loc, text, tail(f.Log(), 30))
}

// shot saves the whole page as name.png among the screenshots.
func (f *fixture) shot(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	// A page still loading has no size to take: wait for it, and try
	// again while its layout settles.
	var png []byte
	laidOut := waitEval(`document.readyState === "complete" && document.body.scrollWidth > 0 && document.body.getBoundingClientRect().height > 0`)
	err := chromedp.Do(ctx, laidOut)
	for try := 0; err == nil; try++ {
		if png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil || try == 4 {
			break
		}
		err = chromedp.Do(ctx, laidOut)
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(f.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
	return p
}

// waitText waits until the element sel holds want.
func waitText(sel, want string) step {
	read := chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, sel))
	return func(ctx context.Context, tgt *chromedp.Target) (chromedp.Void, error) {
		for {
			got, err := read(ctx, tgt)
			if err == nil && strings.Contains(got, want) {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s does not hold %q: %q (%v, %v)", sel, want, got, err, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// waitEval waits until the JavaScript expression is true.
func waitEval(expr string) step {
	check := chromedp.Evaluate[bool](expr)
	return func(ctx context.Context, tgt *chromedp.Target) (chromedp.Void, error) {
		for {
			ok, err := check(ctx, tgt)
			if err == nil && ok {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s: not true (%v, %v)", expr, err, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// into runs an action that yields a value and keeps it in *out.
func into[T any](out *T, a chromedp.Action[T]) step {
	return func(ctx context.Context, tgt *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, tgt)
		*out = v
		return chromedp.Void{}, err
	}
}

// textOf reads the text of the element sel into *out, as it is in the
// page (innerText would fold its spaces).
func textOf(sel string, out *string) step {
	return into(out, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).textContent`, sel)))
}

// css selects the first element a CSS selector matches.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (f *fixture) ml(args ...string) (string, string, int) {
	f.T.Helper()
	return f.ML(rg, ws, args...)
}

func (f *fixture) mustML(args ...string) string {
	f.T.Helper()
	return f.MustML(rg, ws, args...)
}

// submit writes a job file on the attached compute and creates the job.
func (f *fixture) submit(t *testing.T, name, command string) {
	t.Helper()
	doc := "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n" +
		"command: " + strconv.Quote(command) + "\n" +
		"environment:\n  image: library/python:latest\n" +
		"compute: azureml:" + compute + "\n" +
		"display_name: " + name + "\nexperiment_name: studio\n"
	job := filepath.Join(t.TempDir(), "job.yml")
	if err := os.WriteFile(job, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f.mustML("job", "create", "-f", job, "--name", name)
}

// send sends a request (a form POST when form is not nil) and reads the
// answer whole.
func send(t *testing.T, hc *http.Client, method, target string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// markPage marks the page shown, for runInPlace.
var markPage = chromedp.Evaluate[chromedp.Void](`window.studioTestMark = true`)

// runInPlace runs steps on a page marked with markPage and fails when the
// page was loaded again meanwhile: what the steps waited for came live.
func (f *fixture) runInPlace(t *testing.T, timeout time.Duration, what string, steps ...step) {
	t.Helper()
	var same bool
	f.run(t, timeout, what, append(steps, into(&same, chromedp.Evaluate[bool](`window.studioTestMark === true`)))...)
	if !same {
		t.Fatalf("%s: the page was loaded again, not changed in place", what)
	}
}

// listShows opens a section's list from the navigation and waits until
// the row of name holds want.
func (f *fixture) listShows(t *testing.T, section, name, want string) {
	t.Helper()
	row := map[string]string{"computes": "compute", "jobs": "job", "endpoints": "endpoint", "clusters": "cluster"}[section]
	f.run(t, 30*time.Second, "the "+section+" list shows "+name+" "+want,
		chromedp.Click(css("#nav-"+section)),
		waitText(fmt.Sprintf(`#%s tr[data-%s=%q]`, section, row, name), want))
}

// plainClient is an HTTP client with the browser's cookies (the session's
// among them) that sends what a script would: no Origin, no CSRF token.
func (f *fixture) plainClient(t *testing.T) *http.Client {
	t.Helper()
	var cookies network.GetCookiesResult
	f.run(t, 10*time.Second, "read the browser's cookies", func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		var err error
		cookies, err = chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{f.base + "/studio/"}})
		return chromedp.Void{}, err
	})
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(f.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	var hc []*http.Cookie
	for _, c := range cookies.Cookies {
		hc = append(hc, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	jar.SetCookies(u, hc)
	ca, err := os.ReadFile(filepath.Join(f.Dir, "data", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestStudio(t *testing.T) {
	f := setup(t)
	computes := f.base + "/studio/rg/" + rg + "/ws/" + ws + "/computes"
	var text string

	t.Run("sign in", func(t *testing.T) {
		f.run(t, 20*time.Second, "a page without a session leads to the sign-in page",
			chromedp.Navigate(computes), chromedp.WaitVisible(css("#token")), into(&text, chromedp.Location()))
		if !strings.HasPrefix(text, f.base+"/studio/signin?next=") {
			t.Fatalf("without a session: at %s, want the sign-in page", text)
		}
		f.shot(t, "01-signin")
		f.run(t, 20*time.Second, "a wrong token is refused",
			chromedp.SendKeys(css("#token"), "not-the-admin-token-not-the-admin-token"),
			chromedp.Click(css("#signin")),
			waitText("#page-error", "Wrong token"), into(&text, chromedp.Location()))
		if !strings.HasPrefix(text, f.base+"/studio/signin") {
			t.Fatalf("after a wrong token: at %s", text)
		}
		f.shot(t, "02-signin-wrong-token")
		f.run(t, 20*time.Second, "the admin token signs in",
			chromedp.SendKeys(css("#token"), f.AdminToken()),
			chromedp.Click(css("#signin")),
			chromedp.WaitVisible(css("#computes-empty")), into(&text, chromedp.Location()))
		if text != computes {
			t.Fatalf("after signing in: at %s, want %s", text, computes)
		}
		f.shot(t, "03-computes-empty")
	})

	t.Run("attach with a bad namespace shows the CLI's message next to the field", func(t *testing.T) {
		f.run(t, 20*time.Second, "open + New > Kubernetes",
			chromedp.Click(css("#new-menu summary")),
			chromedp.Click(css("#new-kubernetes")),
			chromedp.WaitVisible(css("#attach-form")),
			waitText("#cluster", "rg/c1 · Connected · arcml-extension: Installed"),
			chromedp.SendKeys(css("#name"), compute),
			chromedp.SetValue(css("#cluster"), "/resourceGroups/rg/connectedClusters/c1"),
			chromedp.SetValue(css("#namespace"), "Bad_NS"),
			chromedp.Click(css("#attach")),
			chromedp.WaitVisible(css("#namespace-error")),
			textOf("#namespace-error", &text))
		_, cliErr, code := f.ml("compute", "attach", "--name", compute, "--type", "Kubernetes",
			"--resource-id", "/resourceGroups/rg/connectedClusters/c1", "--namespace", "Bad_NS")
		if code == 0 || !strings.HasPrefix(text, `--namespace "Bad_NS"`) || !strings.Contains(cliErr, text) {
			t.Fatalf("next to the namespace: %q; the CLI (exit %d) says %q", text, code, cliErr)
		}
		f.shot(t, "04-attach-bad-namespace")
		if out, _, code := f.ml("compute", "show", "--name", compute); code == 0 {
			t.Fatalf("a refused attach stored a compute: %s", out)
		}
	})

	t.Run("attach goes Creating to Succeeded live", func(t *testing.T) {
		var first string
		f.run(t, 60*time.Second, "attach from the form",
			chromedp.SetValue(css("#namespace"), "default"),
			chromedp.Click(css("#attach")),
			chromedp.WaitVisible(css("#compute-state")),
			textOf("#compute-state", &first),
			markPage,
			into(&text, chromedp.Location()))
		if text != computes+"/"+compute || first != api.StateCreating {
			t.Fatalf("after attaching: at %s, state %q, want the compute's page, Creating", text, first)
		}
		f.runInPlace(t, 60*time.Second, "the compute's page turns Succeeded", waitText("#compute-state", "Succeeded"))
		f.shot(t, "05-compute-succeeded")
		f.listShows(t, "computes", compute, "Succeeded")
		f.copyToDocs(t, f.shot(t, "06-computes"), "studio-computes.png")
	})

	// The endpoint takes the longest: it is created meanwhile, with the
	// CLI, on the compute the browser attached.
	endpointReady := f.createEndpoint(t)

	t.Run("failed attach shows the reason, detach removes it", func(t *testing.T) {
		const name = "missing-ns"
		f.run(t, 60*time.Second, "attach to a namespace the cluster lacks",
			chromedp.Navigate(computes+"/new"),
			chromedp.WaitVisible(css("#attach-form")),
			chromedp.SendKeys(css("#name"), name),
			chromedp.SetValue(css("#cluster"), "/resourceGroups/rg/connectedClusters/c1"),
			chromedp.SetValue(css("#namespace"), "no-such-namespace"),
			chromedp.Click(css("#attach")),
			waitText("#compute-state", "Failed"),
			waitText("#compute-errors", "no-such-namespace"))
		f.shot(t, "07-compute-failed")
		f.run(t, 20*time.Second, "detach (confirmed)",
			chromedp.Click(css("#detach")),
			chromedp.WaitVisible(css("#computes")),
			into(&text, chromedp.Location()))
		if text != computes {
			t.Fatalf("after detaching: at %s", text)
		}
		if out, _, code := f.ml("compute", "show", "--name", name); code == 0 {
			t.Fatalf("still attached after detach: %s", out)
		}
	})

	t.Run("a POST without the CSRF token changes nothing", func(t *testing.T) {
		hc := f.plainClient(t)
		resp, body := send(t, hc, http.MethodPost, computes+"/"+compute+"/detach", url.Values{})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "CSRF token") {
			t.Fatalf("detach without the token: %d\n%s", resp.StatusCode, body)
		}
		var c api.Compute
		if err := json.Unmarshal([]byte(f.mustML("compute", "show", "--name", compute, "-o", "json")), &c); err != nil || c.ProvisioningState != api.StateSucceeded {
			t.Fatalf("after the refused detach: %+v %v", c, err)
		}
		// The same client reads pages: the session is valid, only the
		// token was missing.
		if resp, _ = send(t, hc, http.MethodGet, computes, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("a page with the session cookie: %d", resp.StatusCode)
		}
	})

	t.Run("connected clusters", func(t *testing.T) {
		f.listShows(t, "clusters", "c1", "Connected")
		f.listShows(t, "clusters", "c1", "arcml-extension Installed")
		f.shot(t, "08-clusters")
		f.run(t, 20*time.Second, "the cluster's page",
			chromedp.Click(css(`#clusters tr[data-cluster="c1"] a`)),
			waitText("#cluster-connectivity", "Connected"),
			waitText(`[data-extension="arcml-extension"] [data-install-state]`, "Installed"),
			waitText(`[data-extension="arcml-extension"] .settings`, "enableTraining"),
			waitText(`[data-extension="arcml-extension"] .settings`, "sslCertPemFile<redacted>"),
			waitText(`[data-extension="arcml-extension"] .settings`, "sslKeyPemFile<redacted>"),
			textOf(`[data-extension="arcml-extension"]`, &text))
		if strings.Contains(text, "PRIVATE KEY") {
			t.Fatal("the cluster page shows a protected setting's value")
		}
		f.shot(t, "09-cluster")
	})

	t.Run("a job's log followed live", func(t *testing.T) {
		// Lines over a few seconds, an output file, on the attached compute.
		const name = "studio-live-log-job"
		f.submit(t, name, `for i in 1 2 3 4 5 6 7 8; do echo "studio line $i"; sleep 1; done; echo 42 > outputs/answer.txt; `+
			`python3 -c "import mlflow; mlflow.log_param('lr', 0.1); [mlflow.log_metric('loss', 1.0 / (i + 1), step=i) for i in range(5)]"`)
		// The job's "Web View", as the CLI prints it, is its Studio page.
		var j api.Job
		if err := json.Unmarshal([]byte(f.mustML("job", "show", "-n", name, "-o", "json")), &j); err != nil {
			t.Fatal(err)
		}
		if web := j.Services["Studio"].Endpoint; web != f.base+"/studio/rg/"+rg+"/ws/"+ws+"/jobs/"+name {
			t.Fatalf("the job's web view is %q, want its Studio page", web)
		}
		var early string
		log := `#logs pre[data-file="user_logs/std_log.txt"]`
		f.run(t, 90*time.Second, "the log's first lines while the job runs",
			chromedp.Navigate(j.Services["Studio"].Endpoint),
			markPage,
			waitText(log, "studio line 2"),
			textOf(log, &early),
			waitText("#job-state", api.JobRunning))
		if strings.Contains(early, "studio line 8") {
			t.Fatalf("the page showed line 2 only with the whole log:\n%s", early)
		}
		f.run(t, 20*time.Second, "more lines while the job runs", waitText(log, "studio line 4"))
		f.copyToDocs(t, f.shot(t, "10-job-running"), "studio-job.png")
		f.runInPlace(t, 60*time.Second, "the rest of the log, then Completed",
			waitText(log, "studio line 8"),
			waitText("#job-state", "Completed"),
			waitText(".output", "answer.txt"),
			// What the job logged with mlflow: a line chart of loss, its
			// last value, and the param.
			waitText(`.chart[data-metric="loss"] figcaption`, "0.2"),
			waitText(`.chart[data-metric="loss"] figcaption`, "5 values"),
			waitText(".params", "lr"))
		var points string
		f.runInPlace(t, 10*time.Second, "the loss chart's line", into(&points, chromedp.Evaluate[string](`document.querySelector('.chart[data-metric="loss"] polyline').getAttribute("points")`)))
		if n := len(strings.Fields(points)); n != 5 {
			t.Errorf("the loss chart has %d points (%q), want 5", n, points)
		}
		f.shot(t, "11-job-completed")
		f.listShows(t, "jobs", name, "Completed")
		f.shot(t, "12-jobs")

		// The output downloads through the Studio, as an attachment.
		resp, body := send(t, f.plainClient(t), http.MethodGet,
			f.base+"/studio/rg/"+rg+"/ws/"+ws+"/jobs/"+name+"/files/workspaceblobstore/ExperimentRun/dcid."+name+"/outputs/answer.txt", nil)
		if resp.StatusCode != http.StatusOK || body != "42\n" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("download: %d %q %v", resp.StatusCode, body, resp.Header)
		}
	})

	t.Run("cancel a running job", func(t *testing.T) {
		const name = "studio-cancel-job"
		f.submit(t, name, "echo started; sleep 300")
		f.run(t, 90*time.Second, "cancel from the job's page (confirmed)",
			chromedp.Navigate(f.base+"/studio/rg/"+rg+"/ws/"+ws+"/jobs/"+name),
			waitText(`#logs pre[data-file="user_logs/std_log.txt"]`, "started"),
			chromedp.Click(css("#cancel")),
			waitText("#job-state", api.JobCanceled))
		f.shot(t, "13-job-canceled")
		var j api.Job
		if err := json.Unmarshal([]byte(f.mustML("job", "show", "-n", name, "-o", "json")), &j); err != nil || j.Status != api.JobCanceled {
			t.Fatalf("after cancel: %s %v", j.Status, err)
		}
	})

	t.Run("an endpoint called from the Test box", func(t *testing.T) {
		select {
		case err := <-endpointReady:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("the endpoint and its deployment were not made within 3 minutes")
		}
		const ep = "diabetes-endpoint"
		f.listShows(t, "endpoints", ep, "blue=100")
		f.shot(t, "14-endpoints")
		f.run(t, 30*time.Second, "the endpoint's page",
			chromedp.Click(css(`#endpoints tr[data-endpoint="`+ep+`"] a`)),
			waitText(`[data-deployment="blue"]`, "Succeeded"))
		f.shot(t, "15-endpoint")
		sample, err := os.ReadFile(filepath.Join(f.examples, "sample-request.json"))
		if err != nil {
			t.Fatal(err)
		}
		var answer string
		f.run(t, 60*time.Second, "the Test box",
			chromedp.SetValue(css("#request"), string(sample)),
			chromedp.Click(css("#test")),
			waitText("#test-status", "200 OK"),
			waitText("#test-served-by", "blue"),
			textOf("#test-answer", &answer))
		var fromStudio, fromCLI []float64
		cli := f.mustML("online-endpoint", "invoke", "-n", ep, "--request-file", filepath.Join(f.examples, "sample-request.json"))
		if err := json.Unmarshal([]byte(answer), &fromStudio); err != nil || len(fromStudio) != 2 {
			t.Fatalf("the Test box's answer %q: %v", answer, err)
		}
		if err := json.Unmarshal([]byte(cli), &fromCLI); err != nil || len(fromCLI) != 2 || fromCLI[0] != fromStudio[0] || fromCLI[1] != fromStudio[1] {
			t.Fatalf("the Test box answered %v, invoke %q", fromStudio, cli)
		}
		f.shot(t, "16-endpoint-test")
		key := strings.TrimSpace(f.mustML("online-endpoint", "get-credentials", "-n", ep, "--query", "primaryKey", "-o", "tsv"))
		f.run(t, 20*time.Second, "keys only on request",
			into(&text, chromedp.OuterHTML(css("html"))))
		if strings.Contains(text, key) {
			t.Fatal("the endpoint's page holds its key before it was asked for")
		}
		f.run(t, 20*time.Second, "show keys",
			chromedp.Click(css("#show-keys")),
			waitText("#keys", key), into(&text, chromedp.Location()))
		if strings.Contains(text, key) {
			t.Fatal("the key is in the URL")
		}
		if strings.Contains(f.Log(), key) {
			t.Fatal("the key is in the workspace's log")
		}
	})

	t.Run("workspaces", func(t *testing.T) {
		f.run(t, 20*time.Second, "the workspaces page lists this one",
			chromedp.Navigate(f.base+"/studio/workspaces"),
			waitText("#workspaces", ws),
			chromedp.SetValue(css("#rg"), "bad..group"),
			chromedp.SetValue(css("#ws"), "other"),
			chromedp.Click(css("#open-workspace")),
			waitText("#rg-error", `resource group "bad..group"`))
		f.shot(t, "17-workspaces")
		f.run(t, 20*time.Second, "open another workspace by name",
			chromedp.SetValue(css("#rg"), "rg2"),
			chromedp.Click(css("#open-workspace")),
			chromedp.WaitVisible(css("#computes-empty")),
			into(&text, chromedp.Location()))
		if text != f.base+"/studio/rg/rg2/ws/other/computes" {
			t.Fatalf("after opening rg2/other: at %s", text)
		}
	})

	t.Run("no script error or policy violation", func(t *testing.T) {
		if errs := f.pageErrors.String(); errs != "" {
			t.Fatalf("the browser reported:\n%s", errs)
		}
	})

	t.Run("sign out", func(t *testing.T) {
		f.run(t, 20*time.Second, "sign out, then pages lead to the sign-in page",
			chromedp.Navigate(computes), chromedp.WaitVisible(css("#signout")),
			chromedp.Click(css("#signout")),
			chromedp.WaitVisible(css("#token")),
			chromedp.Navigate(computes+"/"+compute), chromedp.WaitVisible(css("#token")),
			into(&text, chromedp.Location()))
		if !strings.HasPrefix(text, f.base+"/studio/signin") {
			t.Fatalf("after signing out: at %s", text)
		}
		if strings.Contains(f.Log(), f.AdminToken()) {
			t.Fatal("the admin token is in the workspace's log")
		}
	})
}

// createEndpoint trains the example's model and creates its endpoint and
// blue deployment with the CLI in the background; the channel says when
// they are there.
func (f *fixture) createEndpoint(t *testing.T) <-chan error {
	t.Helper()
	f.examples = t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(f.root, "examples", "endpoints")+"/.", f.examples).CombinedOutput(); err != nil {
		t.Fatalf("copy the example: %v\n%s", err, out)
	}
	done := make(chan error, 1)
	env := append(os.Environ(), f.Env()...)
	step := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		cmd.Dir = f.examples
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	go func() {
		// Debian's python3, the one pods run, whatever python3 comes first
		// in PATH here.
		err := step("/usr/bin/python3", "train.py")
		ml := func(args ...string) error {
			return step(clustertest.Cluster.Outpost, append(append([]string{"ml"}, args...), "-g", rg, "-w", ws)...)
		}
		if err == nil {
			err = ml("online-endpoint", "create", "-f", "endpoint.yml")
		}
		if err == nil {
			err = ml("online-deployment", "create", "-f", "blue-deployment.yml", "--all-traffic")
		}
		done <- err
	}()
	return done
}

// copyToDocs keeps a screenshot as one of the README's.
func (f *fixture) copyToDocs(t *testing.T, shot, name string) {
	t.Helper()
	if shot == "" {
		return
	}
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("OUTPOST_UPDATE_DOCS") == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(f.root, "docs", name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
