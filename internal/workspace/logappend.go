package workspace

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// appendLog appends a request's body to the log file at path (file is its
// name in messages) at ?offset=N, N being the size the writer believes the
// file has. At N == size the body is appended. Below,
// the body is a retry of an append that was (partly) kept: the bytes it
// has in common with the file must be theirs, and only what follows them
// is appended. Anything else is refused with the size.
// Before a new file is made, full says why there is no room for one more
// ("" when there is); appended is called when bytes were kept. Job logs
// and deployment logs share it.
func (s *Server) appendLog(w http.ResponseWriter, r *http.Request, path, file string, full func() (string, error), appended func()) {
	v := r.URL.Query().Get("offset")
	off, err := strconv.ParseInt(v, 10, 64)
	if err != nil || off < 0 {
		s.refuse(w, r, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("offset=%q: want the file's size before this append (a number >= 0)", v))
		return
	}
	defer s.logLocks.lock(path)()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		why, err := full()
		if err != nil {
			s.refuse(w, r, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		if why != "" {
			s.refuse(w, r, http.StatusRequestEntityTooLarge, "TooManyLogFiles", why)
			return
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		s.refuse(w, r, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.refuse(w, r, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.refuse(w, r, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	size := fi.Size()
	conflict := func(msg string) {
		s.endBody(w, r)
		writeJSON(w, http.StatusConflict, logConflict{Code: "Conflict", Message: msg, Size: size})
	}
	if off > size {
		conflict(fmt.Sprintf("log file %s has %d bytes, fewer than offset %d: append from %d", file, size, off, size))
		return
	}
	body := io.Reader(r.Body)
	if off < size {
		same, ended, err := sameBytes(body, io.NewSectionReader(f, off, size-off), size-off)
		switch {
		case err != nil:
			s.refuse(w, r, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		case !same:
			conflict(fmt.Sprintf("log file %s has %d bytes, and those from offset %d differ from this append's: append from %d", file, size, off, size))
			return
		case ended:
			writeJSON(w, http.StatusOK, logAppendResult{Size: size}) // all of it was kept before
			return
		}
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		s.refuse(w, r, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	limit := s.opts.logFileLimit
	n, err := io.Copy(f, io.LimitReader(body, limit-size+1))
	if size+n > limit {
		// All or nothing: a log cut at an arbitrary byte is worse than
		// one that stops at an append.
		if terr := f.Truncate(size); terr != nil {
			s.log.Error("log file: undo an append over the limit", "file", path, "err", terr)
		}
		s.endBody(w, r)
		writeError(w, http.StatusRequestEntityTooLarge, "RequestTooLarge", fmt.Sprintf("log file %s would pass %d bytes, the most a log file may hold: what follows is not kept", file, limit))
		return
	}
	if err == nil {
		err = f.Sync()
	}
	if n > 0 {
		appended()
	}
	if err != nil {
		// What was written stays: it is the start of this append, which a
		// retry at the same offset carries on from.
		writeError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("append to %s: %v (kept %d bytes; retry at the same offset)", file, err, n))
		return
	}
	writeJSON(w, http.StatusOK, logAppendResult{Size: size + n})
}
