package workspace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/store"
)

// The deployment-run API (api/deployrun.go): what a deployment's pods call
// with the deployment's own credential. It reaches that deployment's model
// and code, reads only, and the deployment's own scoring logs.

// deploymentRunPath is where a deployment's pods call.
const deploymentRunPath = "/deployrun/v1" + workspacePath + "/onlineEndpoints/{name}/deployments/{deployment}"

type deploymentCtxKey struct{}

// deploymentOf is the deployment a deployment-run request was admitted for
// (deploymentAuth).
func deploymentOf(r *http.Request) *deployment {
	return r.Context().Value(deploymentCtxKey{}).(*deployment)
}

// deploymentAuth admits a deployment's pods, with the deployment's own
// credential, to the deployment-run routes of that deployment: the token's
// sha256 must be the one stored with it. A deployment being deleted is
// admitted to read only.
func (s *Server) deploymentAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rg, ws, e, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("deployment")
		tok, ok := bearer(r)
		if !ok {
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "missing token: send \"Authorization: Bearer <the deployment's token>\"")
			return
		}
		k := deploymentKey(rg, ws, e, name)
		d, err := s.readDeployment(r.Context(), k)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("deployment credentials unreadable", "deployment", resourceID(k), "err", err)
		}
		want := strings.Repeat("0", sha256.Size*2) // a deployment that is not there is refused in the same time
		if err == nil {
			want = d.rec.TokenSHA256
		}
		if subtle.ConstantTimeCompare([]byte(hashToken(tok)), []byte(want)) != 1 || err != nil || want == "" {
			s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "this credential is not the one of deployment "+name+" of online endpoint "+e+" of workspace "+rg+"/"+ws)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && d.rec.Deleting {
			s.refuse(w, r, http.StatusConflict, "Deleting", fmt.Sprintf("deployment %s is being deleted: its logs take no more writes", name))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), deploymentCtxKey{}, d)))
	})
}

// deploymentRun is what a deployment's scoring server needs.
func deploymentRun(k store.Key, rec deploymentRecord) api.DeploymentRun {
	ws, endpoint := endpointOfDeployment(k)
	run := api.DeploymentRun{Name: k.Name, Endpoint: endpoint, ResourceGroup: k.Group, Workspace: ws,
		ModelURI: rec.ModelURI, ModelName: rec.ModelName, ModelVersion: rec.ModelVersion, ModelFolder: rec.ModelFolder,
		Code: rec.Code, ScoringScript: rec.ScoringScript, EnvironmentVariables: rec.Deployment.EnvironmentVariables}
	if rs := rec.Deployment.RequestSettings; rs != nil {
		run.RequestSettings = *rs
	}
	return run
}

func (s *Server) deployRunSpec(w http.ResponseWriter, r *http.Request) {
	d := deploymentOf(r)
	writeJSON(w, http.StatusOK, deploymentRun(d.obj.Key, d.rec))
}

// scope is what a deployment's credential reaches in the datastore: its
// model (a file, or a folder and what is in it) and its code folder, to
// read; nothing to write.
func (d *deployment) scope() artifacts.Scope {
	var read []uriScope
	if d.rec.ModelURI != "" {
		if u, ok := scopeOf(d.rec.ModelURI, d.rec.ModelFolder == "" && !strings.HasSuffix(d.rec.ModelURI, "/")); ok {
			read = append(read, u)
		}
	}
	if d.rec.Code != "" {
		if u, ok := scopeOf(d.rec.Code, false); ok {
			read = append(read, u)
		}
	}
	return artifacts.Scope{
		Read: func(ds, p string) bool {
			return slices.ContainsFunc(read, func(u uriScope) bool { return u.covers(ds, p) })
		},
		Write: func(string, string) bool { return false },
	}
}

func (s *Server) deployRunListFiles(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeList(w, r, r.PathValue("ds"), deploymentOf(r).scope())
}

func (s *Server) deployRunGetFile(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeFile(w, r, r.PathValue("ds"), r.PathValue("path"), deploymentOf(r).scope())
}

// Deployment logs: each instance (pod) of a deployment ships its scoring
// server's log as it grows, as a job ships its logs, to
// <data-dir>/deploymentlogs/<rg>/<ws>/<endpoint>/<deployment>/<instance>.log.

// instanceRE is a pod's name: what names an instance's log.
var instanceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// maxInstanceLogs bounds the log files of one deployment (instances come
// and go as it scales and rolls).
const maxInstanceLogs = 1024

const instanceLogExt = ".log"

func (s *Server) deploymentLogDir(k store.Key) string {
	ws, endpoint := endpointOfDeployment(k)
	return filepath.Join(s.opts.DataDir, "deploymentlogs", k.Group, ws, endpoint, k.Name)
}

// instanceLogs lists a deployment's instance logs, the latest written last.
func instanceLogs(dir string) ([]fs.FileInfo, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []fs.FileInfo
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), instanceLogExt) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, fi)
	}
	slices.SortStableFunc(out, func(a, b fs.FileInfo) int {
		if c := a.ModTime().Compare(b.ModTime()); c != 0 {
			return c
		}
		return strings.Compare(a.Name(), b.Name())
	})
	return out, nil
}

// deployRunAppendLog appends to an instance's scoring log at ?offset=N
// (appendLog: a retry of bytes already there is accepted).
func (s *Server) deployRunAppendLog(w http.ResponseWriter, r *http.Request) {
	d := deploymentOf(r)
	instance := r.PathValue("instance")
	if !instanceRE.MatchString(instance) {
		s.refuse(w, r, http.StatusBadRequest, "InvalidPath", fmt.Sprintf("instance %s: want the instance's pod name (lower-case letters, digits, '-' and '.')", quoteName(instance)))
		return
	}
	dir := s.deploymentLogDir(d.obj.Key)
	s.appendLog(w, r, filepath.Join(dir, instance+instanceLogExt), instance+instanceLogExt, func() (string, error) {
		logs, err := instanceLogs(dir)
		if err != nil || len(logs) < maxInstanceLogs {
			return "", err
		}
		return fmt.Sprintf("deployment %s has logs of %d instances, the most it may have", d.obj.Name, maxInstanceLogs), nil
	}, func() {})
}

// deploymentLogs answers get-logs: the last ?lines= lines (all when 0 or
// absent, at most maxLogAnswer bytes) of one instance's scoring log:
// ?instance=, else the instance whose log was written last (the one
// serving now, after restarts and rollouts).
func (s *Server) deploymentLogs(w http.ResponseWriter, r *http.Request) {
	rg, ws, e, name := r.PathValue("rg"), r.PathValue("ws"), r.PathValue("name"), r.PathValue("deployment")
	k := deploymentKey(rg, ws, e, name)
	if _, err := s.store.Get(r.Context(), k); errors.Is(err, store.ErrNotFound) {
		s.missingDeployment(w, r, rg, ws, e, name)
		return
	} else if err != nil {
		storeError(w, err, "deployment "+name)
		return
	}
	q := r.URL.Query()
	lines := 0
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("lines=%q: want a number of lines (0: all)", v))
			return
		}
		lines = n
	}
	dir := s.deploymentLogDir(k)
	logs, err := instanceLogs(dir)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	instance := q.Get("instance")
	if instance != "" {
		have := make([]string, len(logs))
		for i, fi := range logs {
			have[i] = strings.TrimSuffix(fi.Name(), instanceLogExt)
		}
		if !slices.Contains(have, instance) {
			list := strings.Join(have, ", ")
			if list == "" {
				list = "none yet"
			}
			writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("deployment %s has no log of instance %s; instances with logs: %s", name, quoteName(instance), list))
			return
		}
	} else if len(logs) > 0 {
		instance = strings.TrimSuffix(logs[len(logs)-1].Name(), instanceLogExt)
	}
	out := api.DeploymentLogs{Instance: instance}
	if instance != "" {
		content, err := tailLines(filepath.Join(dir, instance+instanceLogExt), lines, maxLogAnswer)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		out.Content = content
	}
	writeJSON(w, http.StatusOK, out)
}

// tailLines reads the last n lines of a file (all when n is 0), of its
// last budget bytes at most.
func tailLines(path string, n int, budget int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(0, fi.Size()-budget)
	data, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return "", err
	}
	if off > 0 {
		// The first line read is cut: start at the next one.
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	if n > 0 {
		end := len(data)
		if end > 0 && data[end-1] == '\n' {
			end--
		}
		cut, seen := 0, 0
		for i := end - 1; i >= 0; i-- {
			if data[i] == '\n' {
				seen++
				if seen == n {
					cut = i + 1
					break
				}
			}
		}
		data = data[cut:]
	}
	return string(data), nil
}
