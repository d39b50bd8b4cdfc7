package jobrunner

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/egress"
	"outpost.dev/outpost/internal/training/framework"
)

// Settings of the wrapper that are not the framework's (framework.Env*,
// which the operator sets on every job container, as it does the
// credentials, v1alpha1.Env*).
const (
	EnvRoot = "OUTPOST_JOB_ROOT"
	// EnvTerminationLog replaces /dev/termination-log (tests).
	EnvTerminationLog = "OUTPOST_TERMINATION_LOG"
)

const (
	EnvInstanceIndex        = framework.EnvInstanceIndex
	EnvInstanceCount        = framework.EnvInstanceCount
	EnvFramework            = framework.EnvFramework
	EnvProcessesPerInstance = framework.EnvProcessesPerInstance
	EnvHosts                = framework.EnvHosts
	EnvPort                 = framework.EnvPort
	EnvParameterServers     = framework.EnvParameterServers
)

// DefaultRoot is where the pod's shared volume is mounted.
const DefaultRoot = "/azureml"

const defaultTerminationLog = "/dev/termination-log"

// credentialEnv are the variables the user's processes never see.
var credentialEnv = []string{v1.EnvJobURL, v1.EnvJobToken, v1.EnvJobCA, v1.EnvProxy, v1.EnvNoProxy}

type config struct {
	url            string // the job-run API base, no trailing slash
	token          string
	http           *http.Client
	root           string
	instance       int
	instances      int
	perInstance    int
	plugin         framework.Plugin
	world          framework.World
	path           string // the pod's PATH
	terminationLog string
}

// loadConfig reads the wrapper's settings; every error names the variable.
func loadConfig(env func(string) string) (*config, error) {
	c := &config{
		root:           env(EnvRoot),
		path:           env("PATH"),
		terminationLog: env(EnvTerminationLog),
	}
	if c.root == "" {
		c.root = DefaultRoot
	}
	if !filepath.IsAbs(c.root) {
		return nil, fmt.Errorf("%s=%q: want an absolute path", EnvRoot, c.root)
	}
	if c.terminationLog == "" {
		c.terminationLog = defaultTerminationLog
	}
	if c.path == "" {
		c.path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}

	var missing []string
	for _, k := range []string{v1.EnvJobURL, v1.EnvJobToken, v1.EnvJobCA, EnvInstanceIndex, EnvInstanceCount} {
		if env(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing environment variable(s) %s: the job's pod gets them from the training operator", strings.Join(missing, ", "))
	}

	u, err := url.Parse(env(v1.EnvJobURL))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s: want an https:// URL of the job-run API, with no user, query or fragment", v1.EnvJobURL)
	}
	c.url = strings.TrimRight(u.String(), "/")
	c.token = strings.TrimSpace(env(v1.EnvJobToken))
	if c.token == "" || strings.ContainsAny(c.token, " \t\r\n") {
		// The value is a secret: say what is wrong without showing it.
		return nil, fmt.Errorf("%s: want a single token without spaces", v1.EnvJobToken)
	}

	if c.instances, err = intEnv(env, EnvInstanceCount); err != nil {
		return nil, err
	}
	if c.instances < 1 {
		return nil, fmt.Errorf("%s=%d: want 1 or more", EnvInstanceCount, c.instances)
	}
	if c.instance, err = intEnv(env, EnvInstanceIndex); err != nil {
		return nil, err
	}
	if c.instance < 0 || c.instance >= c.instances {
		return nil, fmt.Errorf("%s=%d: want 0 to %d (%s=%d)", EnvInstanceIndex, c.instance, c.instances-1, EnvInstanceCount, c.instances)
	}
	c.perInstance = 1
	if env(EnvProcessesPerInstance) != "" {
		if c.perInstance, err = intEnv(env, EnvProcessesPerInstance); err != nil {
			return nil, err
		}
		if c.perInstance < 1 {
			return nil, fmt.Errorf("%s=%d: want 1 or more", EnvProcessesPerInstance, c.perInstance)
		}
	}

	if c.plugin, err = framework.For(strings.TrimSpace(env(EnvFramework))); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvFramework, err)
	}
	c.world = framework.World{Instances: c.instances, ProcessesPerInstance: c.perInstance, Port: c.plugin.DefaultPort()}
	if c.world.Hosts, err = hosts(env(EnvHosts), c.instances); err != nil {
		return nil, err
	}
	if env(EnvPort) != "" {
		if c.world.Port, err = intEnv(env, EnvPort); err != nil {
			return nil, err
		}
		if c.world.Port < 0 || c.world.Port > 65535 {
			return nil, fmt.Errorf("%s=%d: want a port number", EnvPort, c.world.Port)
		}
	}
	if env(EnvParameterServers) != "" {
		if c.world.ParameterServers, err = intEnv(env, EnvParameterServers); err != nil {
			return nil, err
		}
		if c.world.ParameterServers < 0 || c.world.ParameterServers >= c.world.Size() {
			return nil, fmt.Errorf("%s=%d: want 0 to %d", EnvParameterServers, c.world.ParameterServers, c.world.Size()-1)
		}
	}

	c.http, err = httpClient([]byte(env(v1.EnvJobCA)), env(v1.EnvProxy), env(v1.EnvNoProxy))
	if err != nil {
		return nil, err
	}
	return c, nil
}

func intEnv(env func(string) string, key string) (int, error) {
	v := strings.TrimSpace(env(key))
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a whole number", key, v)
	}
	return n, nil
}

// hosts are the instances' host names: OUTPOST_HOSTS, or this pod's name
// for a job of one instance.
func hosts(list string, instances int) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		if instances > 1 {
			return nil, fmt.Errorf("%s is not set: a job of %d instances needs the host name of each", EnvHosts, instances)
		}
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("host name of this pod: %w", err)
		}
		return []string{h}, nil
	}
	var hs []string
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("%s=%q: an empty host name", EnvHosts, list)
		}
		hs = append(hs, h)
	}
	if len(hs) != instances {
		return nil, fmt.Errorf("%s=%q: %d host(s) for %s=%d", EnvHosts, list, len(hs), EnvInstanceCount, instances)
	}
	return hs, nil
}

// httpClient reaches the workspace: its CA only, TLS 1.2 or later, through
// the job's proxy by egress's rule (never the environment's HTTPS_PROXY,
// which belongs to the user's image).
func httpClient(caPEM []byte, proxy, noProxy string) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", v1.EnvJobCA)
	}
	if strings.TrimSpace(proxy) == "" {
		proxy = "" // no proxy: the skip range is not used
	} else {
		// The URL may hold a password: the error names the variable only.
		if err := egress.CheckProxy(v1.EnvProxy, proxy); err != nil {
			return nil, err
		}
		if err := egress.CheckNoProxy(v1.EnvNoProxy, noProxy); err != nil {
			return nil, err
		}
	}
	tr, err := egress.Transport(pool, proxy, noProxy)
	if err != nil {
		return nil, err
	}
	tr.ResponseHeaderTimeout = 2 * time.Minute
	tr.MaxIdleConnsPerHost = 8
	tr.ForceAttemptHTTP2 = true
	return &http.Client{Transport: tr}, nil
}
