package router

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Why a request got no instance.
var (
	errNoReadyInstance = errors.New("no ready instance")
	errAllRefused      = errors.New("every instance refused a connection just now")
	errQueueTimeout    = errors.New("queue wait exceeded")
)

// refusedFor is how long an instance that refused a connection is passed
// over: long enough for the pod watch to catch up with a pod that went
// away, short enough that a pod that merely restarted its server is back
// soon.
const refusedFor = time.Second

// instance is an Instance with what this replica knows of its load.
type instance struct {
	Instance
	// Guarded by pool.mu.
	inFlight     int
	refusedUntil time.Time

	idle idleConns
}

// pool is one deployment's instances and the requests waiting for room on
// them. It outlives table swaps (a swap hands it the new instances), so
// that requests in flight keep counting against the instance they are on.
type pool struct {
	endpoint, deployment, namespace string

	mu        sync.Mutex
	instances []*instance
	limit     int       // per instance, at this replica
	queue     list.List // of *waiter, first come first served
	inFlight  int
	next      uint // where the least-loaded scan starts, so that ties rotate
}

type waiter struct {
	ch   chan grant // buffered: a grant never blocks the granter
	elem *list.Element
}

type grant struct {
	in  *instance
	err error
}

// update installs a table's instances and per-instance limit, keeping the
// counts of instances that stay, and returns them for the table's
// snapshot. Waiters get the room the change made, or errNoReadyInstance
// when no instance is left.
func (p *pool) update(ins []Instance, limit int) []*instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := make(map[Instance]*instance, len(p.instances))
	for _, in := range p.instances {
		old[in.Instance] = in
	}
	next := make([]*instance, 0, len(ins))
	for _, i := range ins {
		in := old[i]
		if in == nil {
			in = &instance{Instance: i}
		}
		delete(old, i)
		next = append(next, in)
	}
	for _, gone := range old {
		gone.closeIdle(true)
	}
	p.instances, p.limit = next, limit
	if len(next) == 0 {
		for p.queue.Len() > 0 {
			p.pop().ch <- grant{err: errNoReadyInstance}
		}
		return next
	}
	p.dispatchLocked(time.Now())
	return next
}

// acquire returns one of ins (the instances of the request's table) with
// room for one more request, else waits in the queue for room on the
// pool's current instances until queueDeadline (errQueueTimeout), the
// request's deadline (context.DeadlineExceeded) or the channel of watch
// is closed (the client left: context.Canceled). watch (nil: none) is
// called only when the request has to wait, and its stop func when the
// wait is over: watching a client costs a goroutine, which a request that
// finds room at once does without. The caller must release the instance.
func (p *pool) acquire(watch func() (<-chan struct{}, func()), ins []*instance, limit int, now, queueDeadline, deadline time.Time) (*instance, error) {
	if len(ins) == 0 {
		return nil, errNoReadyInstance
	}
	p.mu.Lock()
	if !anyUp(ins, now) {
		p.mu.Unlock()
		return nil, errAllRefused
	}
	// Only an empty queue may be overtaken: the queue is FIFO.
	if p.queue.Len() == 0 {
		if in := p.pickLocked(ins, limit, now); in != nil {
			in.inFlight++
			p.inFlight++
			p.mu.Unlock()
			return in, nil
		}
	}
	w := &waiter{ch: make(chan grant, 1)}
	w.elem = p.queue.PushBack(w)
	p.mu.Unlock()

	why, until := errQueueTimeout, queueDeadline
	if deadline.Before(queueDeadline) {
		why, until = context.DeadlineExceeded, deadline
	}
	t := time.NewTimer(until.Sub(now))
	defer t.Stop()
	var done <-chan struct{}
	if watch != nil {
		var stop func()
		done, stop = watch()
		defer stop()
	}
	select {
	case g := <-w.ch:
		return g.in, g.err
	case <-t.C:
	case <-done:
		why = context.Canceled
	}
	p.mu.Lock()
	if w.elem != nil {
		p.queue.Remove(w.elem)
		w.elem = nil
		p.mu.Unlock()
		return nil, why
	}
	p.mu.Unlock()
	// Granted while giving up: hand the room on.
	if g := <-w.ch; g.in != nil {
		p.release(g.in)
	}
	return nil, why
}

// release ends a request on in and gives its room to the first waiter.
func (p *pool) release(in *instance) {
	p.mu.Lock()
	in.inFlight--
	p.inFlight--
	if p.queue.Len() > 0 {
		p.dispatchLocked(time.Now())
	}
	p.mu.Unlock()
}

// refused passes over in for refusedFor: it refused a connection.
func (p *pool) refused(in *instance) {
	p.mu.Lock()
	in.refusedUntil = time.Now().Add(refusedFor)
	p.mu.Unlock()
}

func (p *pool) dispatchLocked(now time.Time) {
	for p.queue.Len() > 0 {
		in := p.pickLocked(p.instances, p.limit, now)
		if in == nil {
			return
		}
		in.inFlight++
		p.inFlight++
		p.pop().ch <- grant{in: in}
	}
}

func (p *pool) pop() *waiter {
	w := p.queue.Remove(p.queue.Front()).(*waiter)
	w.elem = nil
	return w
}

// pickLocked returns the instance of ins with the fewest requests in
// flight among those below limit, or nil.
func (p *pool) pickLocked(ins []*instance, limit int, now time.Time) *instance {
	n := len(ins)
	if n == 0 {
		return nil
	}
	start := int(p.next % uint(n))
	p.next++
	var best *instance
	for i := range n {
		in := ins[(start+i)%n]
		if in.inFlight >= limit || (!in.refusedUntil.IsZero() && now.Before(in.refusedUntil)) {
			continue
		}
		if best == nil || in.inFlight < best.inFlight {
			best = in
		}
	}
	return best
}

// anyUp reports whether one of ins has not refused a connection lately;
// the pool's lock guards the instances' state.
func anyUp(ins []*instance, now time.Time) bool {
	for _, in := range ins {
		if in.refusedUntil.IsZero() || !now.Before(in.refusedUntil) {
			return true
		}
	}
	return false
}

// load is the requests in flight and queued here.
func (p *pool) load() (inFlight, queued, ready int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight, p.queue.Len(), len(p.instances)
}
