package workspace

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
	"outpost.dev/outpost/internal/jobspec"
)

// The datastore routes hand over to the artifact store: the workspace API
// with no limit on what it reaches, the job-run API with the job's scope.

// datastoreView is a datastore as the API lists it.
type datastoreView struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	IsDefault bool   `json:"is_default"`
}

func (s *Server) listDatastores(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []datastoreView{{Name: api.DefaultDatastore, Type: "local", IsDefault: true}})
}

func (s *Server) listDatastoreFiles(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeList(w, r, r.PathValue("ds"), artifacts.Scope{})
}

func (s *Server) getDatastoreFile(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeFile(w, r, r.PathValue("ds"), r.PathValue("path"), artifacts.Scope{})
}

func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeBlob(w, r, r.PathValue("digest"))
}

func (s *Server) commitDatastore(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeCommit(w, r, r.PathValue("ds"), artifacts.Scope{})
}

func (s *Server) jobRunListFiles(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeList(w, r, r.PathValue("ds"), jobOf(r).scope())
}

func (s *Server) jobRunGetFile(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeFile(w, r, r.PathValue("ds"), r.PathValue("path"), jobOf(r).scope())
}

func (s *Server) jobRunBlob(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeBlob(w, r, r.PathValue("digest"))
}

func (s *Server) jobRunCommit(w http.ResponseWriter, r *http.Request) {
	s.artifacts.ServeCommit(w, r, r.PathValue("ds"), jobOf(r).scope())
}

// within tells whether p is base itself or under it (base "d" or "d/": the
// file d, or the files of the folder d).
func within(p, base string) bool {
	dir := strings.TrimSuffix(base, "/")
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// uriScope is one datastore location a job may reach: a file (exact) or a
// folder and what is in it.
type uriScope struct {
	ds, path string
	file     bool
}

func (u uriScope) covers(ds, p string) bool {
	if ds != u.ds {
		return false
	}
	if u.file {
		return p == u.path
	}
	return within(p, u.path)
}

func scopeOf(uri string, file bool) (uriScope, bool) {
	ds, p, err := jobspec.ParseDatastoreURI(uri)
	if err != nil {
		return uriScope{}, false
	}
	return uriScope{ds: ds, path: p, file: file}, true
}

// scope is what a job's credential reaches in the datastore: it reads its
// code and its inputs, and writes its outputs and its artifacts.
func (j *job) scope() artifacts.Scope {
	var read, write []uriScope
	if u, ok := scopeOf(j.rec.Code, false); ok {
		read = append(read, u)
	}
	for _, in := range j.rec.Inputs {
		if in.URI == "" {
			continue
		}
		if u, ok := scopeOf(in.URI, in.Type == jobspec.TypeURIFile); ok {
			read = append(read, u)
		}
	}
	for _, out := range j.rec.Outputs {
		if u, ok := scopeOf(out.URI, out.Type == jobspec.TypeURIFile); ok {
			write = append(write, u)
		}
	}
	if u, ok := scopeOf(j.rec.Artifacts, false); ok {
		write = append(write, u)
	}
	anyOf := func(us []uriScope) func(ds, p string) bool {
		return func(ds, p string) bool {
			for _, u := range us {
				if u.covers(ds, p) {
					return true
				}
			}
			return false
		}
	}
	return artifacts.Scope{Read: anyOf(read), Write: anyOf(write)}
}

// checkDataPath checks that a datastore URI names data of the type given:
// uri_file a file, uri_folder a folder with files, mltable a folder with
// an MLTable file, other types a file or a folder. field names the field
// the URI came from, for the message.
func (s *Server) checkDataPath(ctx context.Context, field, typ, uri string) error {
	ds, p, err := jobspec.ParseDatastoreURI(uri)
	if err != nil {
		return fmt.Errorf("%s: %v", field, err)
	}
	if ds != api.DefaultDatastore {
		return fmt.Errorf("%s: datastore %s not found: this workspace has %s", field, ds, api.DefaultDatastore)
	}
	dir := strings.TrimSuffix(p, "/") + "/"
	files, err := s.artifacts.List(ctx, ds, dir)
	if err != nil {
		return lookError(field, err)
	}
	isFile := false
	if !strings.HasSuffix(p, "/") {
		all, err := s.artifacts.List(ctx, ds, p)
		if err != nil {
			return lookError(field, err)
		}
		for _, f := range all {
			isFile = isFile || f.Path == p
		}
	}
	isFolder := len(files) > 0
	switch typ {
	case jobspec.TypeURIFile:
		switch {
		case isFile:
			return nil
		case isFolder:
			return fmt.Errorf("%s: %s is a folder, and type uri_file needs a file: use type uri_folder, or name a file in it", field, uri)
		}
	case jobspec.TypeURIFolder, "":
		switch {
		case isFolder:
			return nil
		case isFile:
			return fmt.Errorf("%s: %s is a file, and type uri_folder needs a folder: use type uri_file", field, uri)
		}
	case jobspec.TypeMLTable:
		for _, f := range files {
			if f.Path == dir+"MLTable" {
				return nil
			}
		}
		if isFolder || isFile {
			return fmt.Errorf("%s: %s has no MLTable file, which type mltable needs: use type uri_folder, or add an MLTable file", field, uri)
		}
	default:
		if isFolder || isFile {
			return nil
		}
	}
	return fmt.Errorf("%s: %s not found in datastore %s (upload it first: the CLI uploads local paths)", field, uri, ds)
}

// lookError is a failed look into the datastore: the store's refusal of
// what was asked (a user's error), or its own failure.
func lookError(field string, err error) error {
	var se *artifacts.StatusError
	if errors.As(err, &se) && se.Status < 500 {
		return fmt.Errorf("%s: %s", field, se.Message)
	}
	return internalError{fmt.Errorf("%s: %w", field, err)}
}
