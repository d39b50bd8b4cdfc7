package workspace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	k8sjson "sigs.k8s.io/json"

	"outpost.dev/outpost/api"
)

// Everything the server takes from a request is checked here: the names in
// the path (by one middleware, for every route), and request bodies (by
// decode), before a handler sees them.

// Names follow Azure's rules, close enough: letters, digits, '-', '_' and
// '.', 1-90 characters, starting with a letter or digit, not ending in '.';
// resource groups may also hold parentheses, as in Azure. No name holds
// "..", so no name reads as a path step wherever it ends up.
var (
	namePattern  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,88}[A-Za-z0-9_-])?$`)
	groupPattern = regexp.MustCompile(`^[A-Za-z0-9_()-]([A-Za-z0-9_.()-]{0,88}[A-Za-z0-9_()-])?$`)
)

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// maxPathLen bounds a file path in a URL.
const maxPathLen = 4096

// checkFilePath allows a relative, slash-separated path with no empty, "."
// or ".." segment and no control character.
func checkFilePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path of %d bytes, over %d", len(p), maxPathLen)
	case strings.IndexFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) >= 0:
		return fmt.Errorf("path %s: control characters and backslashes are not allowed", quoteName(p))
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path %s: want a relative path with no empty, \".\" or \"..\" segment", quoteName(p))
		}
	}
	return nil
}

const (
	nameRule  = "use 1-90 letters, digits, '-', '_' or '.', starting with a letter or digit and not ending in '.'"
	groupRule = "use 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"
)

// checkName checks one name; what says what it names ("resource group",
// "cluster name", ...), and resource groups have their own rule.
func checkName(what, v string) error {
	re, rule := namePattern, nameRule
	switch what {
	case "resource group":
		re, rule = groupPattern, groupRule
	case "blob digest":
		if !digestPattern.MatchString(v) {
			return fmt.Errorf("blob digest %s: want sha256:<64 lower-case hex digits>", quoteName(v))
		}
		return nil
	case "file path", "log file":
		// Paths get a first look here; their handlers check them further.
		if err := checkFilePath(v); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	switch {
	case v == "":
		return fmt.Errorf("%s is required", what)
	case !re.MatchString(v) || strings.Contains(v, ".."):
		return fmt.Errorf("%s %s: %s, with no \"..\"", what, quoteName(v), rule)
	}
	return nil
}

// quoteName shows a rejected name, shortened: it may be 1,000 characters or
// hold control characters.
func quoteName(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("%q... (%d characters)", v[:40], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// checkNames checks pairs of (what, name).
func checkNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := checkName(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// pathParam is a wildcard of a route's path and what it names.
type pathParam struct{ wildcard, what string }

// segmentNames names a wildcard by the path segment before it.
var segmentNames = map[string]string{
	"resourceGroups":    "resource group",
	"connectedClusters": "cluster name",
	"extensions":        "extension name",
	"workspaces":        "workspace name",
	"computes":          "compute name",
	"jobs":              "job name",
	"environments":      "environment name",
	"data":              "data asset name",
	"versions":          "version",
	"datastores":        "datastore name",
	"blobs":             "blob digest",
	"files":             "file path",
	"logs":              "log file",
	"models":            "model name",
	"onlineEndpoints":   "endpoint name",
	"deployments":       "deployment name",
}

// pathParams lists the wildcards of a route pattern. A wildcard after a
// segment with no known name panics at start: every route must be checked.
func pathParams(pattern string) []pathParam {
	var out []pathParam
	segs := strings.Split(pattern, "/")
	for i, seg := range segs {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		what := ""
		if i > 0 {
			what = segmentNames[segs[i-1]]
		}
		if what == "" {
			panic("route " + pattern + ": no name rule for wildcard " + seg)
		}
		out = append(out, pathParam{wildcardName(seg), what})
	}
	return out
}

// checkPath refuses a request whose path names break the rules, before
// anything (authentication included) looks them up.
func (s *Server) checkPath(params []pathParam, next http.Handler) http.Handler {
	if len(params) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range params {
			if err := checkName(p.what, r.PathValue(p.wildcard)); err != nil {
				s.refuse(w, r, http.StatusBadRequest, "InvalidName", err.Error())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// decode reads a JSON request body into v strictly: one JSON value and
// nothing after it, field names exactly as documented (encoding/json would
// match them in any case), no unknown or repeated fields; then checks what
// the body holds.
func decode(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("request body: empty; send a JSON object (the API is described at /openapi.json)")
	}
	if err := decodeStrict(data, v); err != nil {
		return err
	}
	return checkBody(v)
}

// decodeStrict decodes one JSON value as decode does, without checkBody.
func decodeStrict(data []byte, v any) error {
	strict, err := k8sjson.UnmarshalStrict(data, v)
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("request body: %s (field names are case-sensitive; the API is described at /openapi.json)", strings.Join(msgs, "; "))
	}
	return nil
}

// checkBody checks the fields of request bodies that are stored as given.
// (Extension settings are checked by the extension's own parser.)
func checkBody(v any) error {
	switch b := v.(type) {
	case *clusterSpec:
		return checkProxy(b.Proxy)
	case *api.ComputeRequest:
		return checkResourceID(b.ResourceID)
	}
	return nil
}

// checkProxy allows an empty proxy or http(s)://host[:port].
func checkProxy(p string) error {
	if p == "" {
		return nil
	}
	const want = "want http://host:port or https://host:port"
	if len(p) > 2048 {
		return fmt.Errorf("proxy: %d characters; %s", len(p), want)
	}
	u, err := url.Parse(p)
	switch {
	// The value is not echoed: it may hold a password.
	case err != nil:
		return errors.New("proxy: not a URL; " + want)
	case u.User != nil:
		// The proxy is shown by `connectedk8s show`: a password in it would
		// be a secret in everyone's output.
		return errors.New("proxy: a URL with user credentials is not kept by the workspace, which shows the proxy to every user; give http(s)://host:port")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Hostname() == "":
		return fmt.Errorf("proxy %s: %s", quoteName(p), want)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("proxy %s: %s, without a path, query or fragment", quoteName(p), want)
	}
	return nil
}

// checkResourceID checks a cluster's resource id, short
// (/resourceGroups/RG/connectedClusters/NAME) or Azure's long form: every
// segment a plain name, no "..", no control characters.
func checkResourceID(id string) error {
	const want = "expected /resourceGroups/<group>/connectedClusters/<name> (or the Azure form with /subscriptions/.../providers/Microsoft.Kubernetes/connectedClusters/<name>)"
	if id == "" {
		return errors.New("--resource-id is required: " + want)
	}
	if len(id) > 1024 {
		return fmt.Errorf("--resource-id: %d characters; %s", len(id), want)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(id, "/"), "/") {
		if seg == "" || strings.Contains(seg, "..") || !groupPattern.MatchString(seg) {
			return fmt.Errorf("--resource-id %s: segment %s is not a name; %s", quoteName(id), quoteName(seg), want)
		}
	}
	rg, name, err := ParseClusterID(id)
	if err != nil {
		return err
	}
	return checkNames("resource group", rg, "cluster name", name)
}
