package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Log shipping; tests shorten shipInterval.
var (
	shipInterval = 500 * time.Millisecond // how often what a process wrote is sent
	shipBatch    = 256 << 10              // the most one append carries; this much pending sends at once
	memLimit     = 8 << 20                // unsent bytes kept in memory before the local copy serves them
)

// shipper appends what a process writes to one log file of the job in the
// workspace, in order, batched, and retried until it is in. Write never
// waits on the network: the bytes go to a local copy (ROOT/logs/<file>)
// and, up to memLimit, to memory; beyond that the shipper reads them back
// from the local copy, so a workspace that is away for a while costs disk,
// not memory, and loses nothing.
type shipper struct {
	api  *jobAPI
	file string // e.g. user_logs/std_log.txt
	warn func(format string, args ...any)
	// start is where this log begins in the workspace's file: 0, or the
	// size it had already (a restarted scoring server's log follows the
	// one before).
	start int64

	mu       sync.Mutex
	local    *os.File
	diskEnd  int64 // the local copy holds [0, diskEnd)
	diskErr  error // the local copy failed: it holds nothing beyond diskEnd
	mem      []byte
	memStart int64 // mem holds [memStart, written)
	memLimit int   // the most unsent bytes kept in memory
	written  int64
	sent     int64 // what the workspace has of [0, written), as far as known
	lost     int64 // bytes neither the local copy nor memory could keep
	closing  bool

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	err    error // why shipping stopped short; read after done
}

// newShipper starts shipping file; root/logs/<file> is the local copy.
func newShipper(a *jobAPI, root, file string, warn func(string, ...any)) (*shipper, error) {
	return newShipperAt(a, root, file, warn, 0)
}

// newShipperAt starts shipping file from offset start of the workspace's
// file.
func newShipperAt(a *jobAPI, root, file string, warn func(string, ...any), start int64) (*shipper, error) {
	p := filepath.Join(root, "logs", filepath.FromSlash(file))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &shipper{api: a, file: file, warn: warn, start: start, local: f, memLimit: memLimit, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go s.loop(ctx)
	return s, nil
}

// Write takes bytes of the log; it never fails, and never waits on the
// workspace.
func (s *shipper) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return 0, errors.New("log " + s.file + " is closed")
	}
	if s.diskErr == nil {
		n, err := s.local.Write(p)
		s.diskEnd += int64(n)
		if err != nil {
			s.diskErr = err
			s.warn("keeping a local copy of %s: %v (the log is kept in memory, up to %d MiB, from now on)", s.file, err, s.memLimit>>20)
		}
	}
	switch {
	case s.diskErr == nil && len(s.mem)+len(p) > s.memLimit:
		// The local copy has it all: memory starts again past it.
		s.mem, s.memStart = nil, s.written+int64(len(p))
	case len(s.mem)+len(p) > s.memLimit:
		// Nowhere to keep it: drop it whole, so that offsets stay true.
		if s.lost == 0 {
			s.warn("log %s: memory full and no local copy: dropping output until the workspace takes some", s.file)
		}
		s.lost += int64(len(p))
		s.diskEnd = min(s.diskEnd, s.written)
		return len(p), nil
	default:
		s.mem = append(s.mem, p...)
	}
	s.written += int64(len(p))
	if s.written-s.sent >= int64(shipBatch) {
		s.poke()
	}
	return len(p), nil
}

func (s *shipper) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// chunk returns up to shipBatch bytes of the log from off, and whether the
// log is complete.
func (s *shipper) chunk(off int64) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= s.written {
		return nil, s.closing, nil
	}
	end := min(s.written, off+int64(shipBatch))
	if off >= s.memStart {
		return append([]byte(nil), s.mem[off-s.memStart:end-s.memStart]...), false, nil
	}
	end = min(end, s.diskEnd)
	if off >= end {
		return nil, false, fmt.Errorf("log %s: bytes from offset %d are no longer kept (the local copy failed: %v)", s.file, off, s.diskErr)
	}
	buf := make([]byte, end-off)
	if _, err := s.local.ReadAt(buf, off); err != nil {
		return nil, false, fmt.Errorf("log %s: reading the local copy: %w", s.file, err)
	}
	return buf, false, nil
}

// shipped records that the workspace holds [0, off): memory lets go of it.
func (s *shipper) shipped(off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = off
	if off > s.memStart {
		k := min(off, s.written) - s.memStart
		s.mem, s.memStart = s.mem[k:], s.memStart+k
		if len(s.mem) == 0 {
			s.mem = nil
		}
	}
}

func (s *shipper) loop(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(shipInterval)
	defer tick.Stop()
	// off is where in the local log the next append starts; base is where
	// the workspace's file stood when this log began (0 unless it held
	// something already, which a 409 reveals).
	var off int64
	base := s.start
	wait := backoffFirst
	for {
		for {
			data, complete, err := s.chunk(off)
			if err != nil {
				s.err = err
				return
			}
			if len(data) == 0 {
				if complete {
					return
				}
				break
			}
			err = s.api.appendLog(ctx, s.file, base+off, data)
			var oe *offsetError
			switch {
			case err == nil:
				off += int64(len(data))
				s.shipped(off)
				wait = backoffFirst
				continue
			case errors.As(err, &oe):
				// An earlier append got in though its answer was lost, or the
				// workspace lost a tail: go on from what it has.
				if oe.size == base+off {
					s.err = fmt.Errorf("sending log %s: the workspace refuses offset %d, which it gives as the log's size", s.file, oe.size)
					return
				}
				s.mu.Lock()
				written := s.written
				s.mu.Unlock()
				if at := oe.size - base; at >= 0 && at <= written {
					off = at
				} else {
					// It holds more than this log has written (or less than
					// where it began): go on after what it has.
					base = oe.size - off
				}
				s.shipped(off)
				continue
			case !transient(err) || ctx.Err() != nil:
				if ctx.Err() != nil {
					err = fmt.Errorf("%w (gave up)", err)
				}
				s.err = fmt.Errorf("sending log %s: %w", s.file, err)
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				s.err = fmt.Errorf("sending log %s: %w (gave up)", s.file, err)
				return
			case <-t.C:
			}
			wait = min(2*wait, backoffMax)
		}
		select {
		case <-ctx.Done():
			s.err = fmt.Errorf("sending log %s: %w", s.file, ctx.Err())
			return
		case <-s.kick:
		case <-tick.C:
		}
	}
}

// close sends what is left, giving up at deadline; the error says what was
// not sent.
func (s *shipper) close(deadline time.Time) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.poke()
	awaitUntil(s.done, s.cancel, deadline)
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.err != nil {
		errs = append(errs, fmt.Errorf("%w (%d of %d bytes sent)", s.err, s.sent, s.written))
	}
	if s.lost > 0 {
		errs = append(errs, fmt.Errorf("log %s: %d bytes of output were dropped", s.file, s.lost))
	}
	if err := s.local.Close(); err != nil && s.diskErr == nil {
		errs = append(errs, fmt.Errorf("local copy of %s: %w", s.file, err))
	}
	return errors.Join(errs...)
}

// awaitUntil waits for done, or until deadline, when it calls cancel to
// stop what done waits for and waits for done again; cancel is called in
// any case, to release its context.
func awaitUntil(done <-chan struct{}, cancel context.CancelFunc, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		cancel()
		<-done
	}
	cancel()
}

// tailBuffer keeps the end of a process's output for the termination
// message.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailKeep = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(p) >= tailKeep {
		t.buf = append(t.buf[:0], p[len(p)-tailKeep:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailKeep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf[max(0, len(t.buf)-tailKeep):]...)
}

// console is the wrapper's stdout (what `kubectl logs` shows), shared by
// the processes: each writes whole lines to it.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	warn func(string, ...any)
	err  error
}

func (c *console) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if _, err := c.w.Write(p); err != nil {
		c.err = err
		c.warn("writing the job's output to stdout: %v (the workspace log still gets it)", err)
	}
}

// Line assembly; tests shorten partialDelay.
var partialDelay = 500 * time.Millisecond // a line without its end waits at most this long

const maxPartial = 64 << 10

// lineWriter passes one process's output to the console a line at a time
// (a line ends in \n or \r, as a terminal shows progress bars), so that
// processes sharing the console do not cut each other's lines. A line
// still unfinished after partialDelay, or very long, goes as it is.
type lineWriter struct {
	out     *console
	delay   time.Duration // partialDelay when 0
	mu      sync.Mutex
	partial []byte
	timer   *time.Timer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := lastLineEnd(p)
	if i < 0 {
		l.partial = append(l.partial, p...)
	} else {
		out := append(l.partial, p[:i+1]...)
		l.out.write(out)
		l.partial = append(out[:0], p[i+1:]...)
	}
	switch {
	case len(l.partial) >= maxPartial:
		l.out.write(l.partial)
		l.partial = l.partial[:0]
	case len(l.partial) > 0 && l.timer == nil:
		d := l.delay
		if d == 0 {
			d = partialDelay
		}
		l.timer = time.AfterFunc(d, l.flushPartial)
	}
	return len(p), nil
}

func lastLineEnd(p []byte) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '\n' || p[i] == '\r' {
			return i
		}
	}
	return -1
}

func (l *lineWriter) flushPartial() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if len(l.partial) > 0 {
		l.out.write(l.partial)
		l.partial = l.partial[:0]
	}
}

// close writes what is left of the last line.
func (l *lineWriter) close() {
	l.mu.Lock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	l.flushPartial()
}
