package router

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// LogWriter buffers log lines and writes them out every interval or when
// 64 KiB have gathered: a busy router then pays one write system call per
// batch of request lines rather than one per request.
type LogWriter struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// NewLogWriter starts a LogWriter on w; Close flushes and stops it.
func NewLogWriter(w io.Writer, every time.Duration) *LogWriter {
	l := &LogWriter{bw: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.Flush()
			}
		}
	}()
	return l
}

// Write buffers p (slog handlers write a record at a time).
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bw.Write(p)
}

// Flush writes out what is buffered.
func (l *LogWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bw.Flush()
}

// Close stops the periodic flushes and flushes the rest.
func (l *LogWriter) Close() error {
	close(l.stop)
	<-l.done
	return l.Flush()
}

var lines = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// appendRequestLine formats a request's log line as slog's TextHandler
// would (time=... level=INFO msg=request endpoint=...), by hand: it is
// written for every request, and slog's handler costs several times more.
func appendRequestLine(b []byte, now time.Time, o *outcome, method []byte, status int, d time.Duration, id []byte) []byte {
	b = append(b, "time="...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " level=INFO msg=request endpoint="...)
	b = appendLogValue(b, o.endpoint)
	b = append(b, " deployment="...)
	b = appendLogValue(b, o.deployment)
	b = append(b, " method="...)
	b = appendLogValue(b, method)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, " duration="...)
	b = append(b, d.String()...)
	b = append(b, " id="...)
	b = appendLogValue(b, id)
	return append(b, '\n')
}

// appendLogValue quotes v when slog's TextHandler would: empty, or with
// spaces, quotes, '=' or anything not printable ASCII.
func appendLogValue[S string | []byte](b []byte, v S) []byte {
	if len(v) == 0 {
		return append(b, `""`...)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == '"' || c == '=' || c >= utf8.RuneSelf || c == 0x7f {
			return strconv.AppendQuote(b, string(v))
		}
	}
	return append(b, v...)
}
