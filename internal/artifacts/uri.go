// Package artifacts is the workspace's datastore: content-addressed blobs on
// disk (verified on upload and on download) and an index of path -> blob per
// datastore. The server side serves the datastore and blob routes of the
// workspace API and of the job-run API; the client side uploads folders
// (honouring .amlignore / .gitignore, skipping blobs already there, one
// atomic commit) and downloads files, checking every byte.
package artifacts

import (
	"fmt"
	"strings"

	"outpost.dev/outpost/api"
)

// Datastore is the only datastore a workspace has.
const Datastore = api.DefaultDatastore

const uriScheme = "azureml://"

// URI is the short datastore URI of a path:
// azureml://datastores/<ds>/paths/<path>.
func URI(datastore, path string) string {
	return uriScheme + "datastores/" + datastore + "/paths/" + path
}

// uriForms is what ParseURI accepts, for its errors.
const uriForms = "azureml://datastores/<datastore>/paths/<path> or " +
	"azureml://subscriptions/<subscription>/resourcegroups/<group>/workspaces/<workspace>/datastores/<datastore>/paths/<path>"

// ParseURI splits a datastore URI, short or long form, into the datastore
// and the path in it. A path ending in "/" names a folder and keeps its
// slash; an empty path is the datastore's root. The path must be clean
// (relative, no "." or ".." segments, no empty segments).
func ParseURI(uri string) (datastore, path string, err error) {
	rest, ok := strings.CutPrefix(uri, uriScheme)
	if !ok {
		return "", "", fmt.Errorf("datastore URI %q: want %s", uri, uriForms)
	}
	// The path may hold anything, "/datastores/" included: split off the
	// part before the first "/paths/" only.
	head, p, ok := strings.Cut(rest, "/paths/")
	if !ok {
		if h, found := strings.CutSuffix(rest, "/paths"); found {
			head, p, ok = h, "", true
		}
	}
	if !ok {
		return "", "", fmt.Errorf("datastore URI %q has no /paths/: want %s", uri, uriForms)
	}
	seg := strings.Split(head, "/")
	switch {
	case len(seg) == 2 && strings.EqualFold(seg[0], "datastores"):
	case len(seg) == 8 && strings.EqualFold(seg[0], "subscriptions") && strings.EqualFold(seg[2], "resourcegroups") &&
		strings.EqualFold(seg[4], "workspaces") && strings.EqualFold(seg[6], "datastores") &&
		seg[1] != "" && seg[3] != "" && seg[5] != "":
		seg = seg[6:]
	default:
		return "", "", fmt.Errorf("datastore URI %q: want %s", uri, uriForms)
	}
	if seg[1] == "" {
		return "", "", fmt.Errorf("datastore URI %q names no datastore: want %s", uri, uriForms)
	}
	if p != "" {
		if err := CheckPath(strings.TrimSuffix(p, "/")); err != nil {
			return "", "", fmt.Errorf("datastore URI %q: %w", uri, err)
		}
	}
	return seg[1], p, nil
}

// CheckPath tells a clean file path: relative, slash-separated, with no
// empty, "." or ".." segments and no NUL.
func CheckPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty path")
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q: must be relative (no leading /)", p)
	}
	if strings.ContainsAny(p, "\x00\\") {
		return fmt.Errorf("path %q: NUL and backslash are not allowed", p)
	}
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "":
			return fmt.Errorf("path %q: empty segment (// or a trailing /)", p)
		case ".", "..":
			return fmt.Errorf("path %q: %q segments are not allowed", p, s)
		}
	}
	return nil
}
