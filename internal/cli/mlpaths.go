package cli

import (
	"net/url"
	"strconv"
)

// Paths of the workspace's machine learning API, all under
// /resourceGroups/{rg}/workspaces/{ws}:
//
//	GET, PATCH         (the workspace)
//	PUT, GET, PATCH    /jobs/{name}
//	GET                /jobs
//	POST               /jobs/{name}/cancel
//	GET                /jobs/{name}/logs?from=FILE:OFFSET,...&wait=S
//	PUT, GET           /environments/{name}/versions/{version}
//	POST, GET          /environments/{name}/versions   (POST: the next version)
//	GET                /environments                   (the latest version of each)
//	GET                /environments/{name}            (its latest version)
//	PUT, GET           /data/{name}/versions/{version}
//	POST, GET          /data/{name}/versions
//	GET                /data
//	GET                /data/{name}
type wsPath struct{ rg, ws string }

func (p wsPath) base() string {
	return "/resourceGroups/" + url.PathEscape(p.rg) + "/workspaces/" + url.PathEscape(p.ws)
}

func (p wsPath) jobs() string           { return p.base() + "/jobs" }
func (p wsPath) job(name string) string { return p.jobs() + "/" + url.PathEscape(name) }

// jobLogs is the long poll of a job's logs from the offsets given.
func (p wsPath) jobLogs(name, from string, wait int) string {
	q := url.Values{}
	if from != "" {
		q.Set("from", from)
	}
	q.Set("wait", strconv.Itoa(wait))
	return p.job(name) + "/logs?" + q.Encode()
}

// assets are "environments" and "data".
func (p wsPath) assets(kind string) string { return p.base() + "/" + kind }

func (p wsPath) asset(kind, name string) string { return p.assets(kind) + "/" + url.PathEscape(name) }

func (p wsPath) versions(kind, name string) string { return p.asset(kind, name) + "/versions" }

func (p wsPath) version(kind, name, version string) string {
	return p.versions(kind, name) + "/" + url.PathEscape(version)
}
