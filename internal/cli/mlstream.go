package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
)

// logWait is how long one logs request waits for news (the workspace
// allows up to 25 s, within the client's 60 s timeout).
const logWait = 20

// maxOutage is how long stream keeps reconnecting to a workspace it cannot
// reach before it gives up.
const maxOutage = 15 * time.Minute

// reconnectDelay is the first wait before reconnecting; it doubles up to
// 10 s while the workspace stays away.
var reconnectDelay = time.Second

var rankRE = regexp.MustCompile(`^std_log_process_(\d+)\.txt$`)

// logPrinter writes the chunks of a job's log files as they come: a header
// when a file first appears and, once the job has several processes, each
// line prefixed by its rank ("[rank 1] "), whole lines only so that ranks
// do not mix within a line.
type logPrinter struct {
	w       io.Writer
	multi   bool             // prefix lines
	offsets map[string]int64 // the bytes of each file printed so far
	partial map[string][]byte
	files   []string
	ranks   int  // rank files seen
	midLine bool // the last byte written was not a newline
}

func newLogPrinter(w io.Writer, processes int) *logPrinter {
	return &logPrinter{w: w, multi: processes > 1, offsets: map[string]int64{}, partial: map[string][]byte{}}
}

// from is the ?from= of the next request: each file at the offset printed.
func (p *logPrinter) from() string {
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(p.offsets)) {
		parts = append(parts, f+":"+strconv.FormatInt(p.offsets[f], 10))
	}
	return strings.Join(parts, ",")
}

// prefixed tells whether the lines of file get a prefix: those of a job
// with several processes, when they come from a rank's file or from one of
// several files.
func (p *logPrinter) prefixed(file string) bool {
	return p.multi && (rankRE.MatchString(path.Base(file)) || len(p.files) > 1)
}

func (p *logPrinter) prefix(file string) string {
	if m := rankRE.FindStringSubmatch(path.Base(file)); m != nil {
		return "[rank " + m[1] + "] "
	}
	return "[" + path.Base(file) + "] "
}

func (p *logPrinter) write(c api.JobLogChunk) error {
	known, seen := p.offsets[c.File]
	data := c.Data
	if skip := known - c.Offset; skip > 0 {
		// Bytes printed already (a retried request).
		if skip >= int64(len(data)) {
			return nil
		}
		data = data[skip:]
	}
	if !seen {
		p.files = append(p.files, c.File)
		if rankRE.MatchString(path.Base(c.File)) {
			p.ranks++
		}
		if p.ranks > 1 {
			// More processes than the job's document says: tell ranks
			// apart from now on.
			p.multi = true
		}
		if err := p.header(c.File); err != nil {
			return err
		}
	}
	p.offsets[c.File] = max(known, c.Offset) + int64(len(data))
	if !p.prefixed(c.File) {
		return p.out(data)
	}
	buf := append(p.partial[c.File], data...)
	pre := []byte(p.prefix(c.File))
	var b bytes.Buffer
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		b.Write(pre)
		b.Write(buf[:i+1])
		buf = buf[i+1:]
	}
	p.partial[c.File] = append([]byte(nil), buf...)
	return p.out(b.Bytes())
}

func (p *logPrinter) header(file string) error {
	title := "Streaming " + file
	return p.out([]byte(p.newline() + title + "\n" + strings.Repeat("=", len(title)) + "\n"))
}

// newline ends a line left open, so that what follows starts a line.
func (p *logPrinter) newline() string {
	if p.midLine {
		return "\n"
	}
	return ""
}

func (p *logPrinter) out(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	p.midLine = b[len(b)-1] != '\n'
	_, err := p.w.Write(b)
	return err
}

// flush prints the unfinished last lines of each file.
func (p *logPrinter) flush() error {
	for _, f := range p.files {
		if rest := p.partial[f]; len(rest) > 0 {
			p.partial[f] = nil
			if err := p.out(append([]byte(p.prefix(f)), append(rest, '\n')...)); err != nil {
				return err
			}
		}
	}
	return nil
}

// processes is how many processes a job runs, each with its own log file
// when there are several.
func processes(j api.JobSpec) int {
	n := 1
	if j.Resources != nil && j.Resources.InstanceCount > 0 {
		n = j.Resources.InstanceCount
	}
	d := j.Distribution
	if d == nil {
		return n
	}
	switch strings.ToLower(d.Type) {
	case "tensorflow":
		if d.WorkerCount > 0 {
			return d.WorkerCount + d.ParameterServerCount
		}
		return n + d.ParameterServerCount
	default:
		return n * max(1, d.ProcessCountPerInstance)
	}
}

// studio is the job's web view, as az prints it.
func studio(j api.Job) string {
	if s, ok := j.Services["Studio"]; ok {
		return s.Endpoint
	}
	return ""
}

// transientError tells a failure worth reconnecting after: the network,
// or the workspace (or a proxy) briefly unable.
func transientError(err error) bool {
	var se *client.StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests || se.Code == http.StatusRequestTimeout
	}
	return true
}

// interruptedError ends a command the user stopped; the work it started
// goes on. Main prints its message as is and exits with 130, as a shell
// does for Ctrl-C.
type interruptedError struct{ msg string }

func (e *interruptedError) Error() string { return e.msg }

// streamJob prints a job's logs as they come until it ends, as `az ml job
// stream` does, and fails unless the job Completed.
func streamJob(ctx context.Context, ws *client.Client, p wsPath, name string, stdout, stderr io.Writer) error {
	var job api.Job
	if err := ws.Do(ctx, "GET", p.job(name), nil, &job); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "RunId: %s\nWeb View: %s\n", name, studio(job))
	lp := newLogPrinter(stdout, processes(job.JobSpec))
	stopped := func() error {
		if err := lp.flush(); err != nil {
			return err
		}
		ids := " --name " + shellQuote(name) + " --workspace-name " + shellQuote(p.ws) + " --resource-group " + shellQuote(p.rg)
		return &interruptedError{fmt.Sprintf("stopped streaming; job %s goes on (follow it with `outpost ml job stream%s`, cancel it with `outpost ml job cancel%s`)", name, ids, ids)}
	}
	lastState := ""
	var logs api.JobLogs
	var outage time.Time
	delay := reconnectDelay
	for {
		// A fresh answer each time: fields an answer leaves out must not
		// keep the previous one's values.
		logs = api.JobLogs{}
		err := ws.Do(ctx, "GET", p.jobLogs(name, lp.from(), logWait), nil, &logs)
		if ctx.Err() != nil {
			return stopped()
		}
		if err != nil {
			if !transientError(err) {
				return err
			}
			if outage.IsZero() {
				outage = time.Now()
				fmt.Fprintf(stderr, "lost the workspace (%v); reconnecting ...\n", err)
			} else if time.Since(outage) > maxOutage {
				return fmt.Errorf("could not reach the workspace for %s, giving up streaming (job %s goes on): %w", maxOutage, name, err)
			}
			select {
			case <-ctx.Done():
				return stopped()
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
			continue
		}
		if !outage.IsZero() {
			fmt.Fprintln(stderr, "reconnected")
			outage, delay = time.Time{}, reconnectDelay
		}
		if state := stateLine(logs.Status, logs.StatusMessage); state != lastState {
			// State lines go to stderr: stdout holds the log itself.
			fmt.Fprintln(stderr, state)
			lastState = state
		}
		for _, c := range logs.Chunks {
			if err := lp.write(c); err != nil {
				return err
			}
		}
		if logs.Done {
			break
		}
	}
	if err := lp.flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\nExecution Summary\n=================\nRunId: %s\nWeb View: %s\n", lp.newline(), name, studio(job))
	return jobResult(name, logs.Status, logs.StatusMessage)
}

func stateLine(status, msg string) string {
	if msg == "" {
		return "[" + status + "]"
	}
	return "[" + status + "] " + msg
}

// jobResult is nil for a Completed job and says why otherwise.
func jobResult(name, status, msg string) error {
	why := ""
	if msg != "" {
		why = ": " + msg
	}
	switch status {
	case api.JobCompleted:
		return nil
	case api.JobFailed:
		return fmt.Errorf("job %s failed%s", name, why)
	case api.JobCanceled:
		return fmt.Errorf("job %s was canceled%s", name, why)
	}
	return fmt.Errorf("job %s ended in state %s%s", name, status, why)
}
