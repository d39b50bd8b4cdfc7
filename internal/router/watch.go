package router

import (
	"crypto/tls"
	"sync/atomic"
	"syscall"
	"time"
)

// watchClient watches the client's connection while x's request waits in
// a queue: the channel closes when the client closes (or resets) the
// connection, so that the request leaves the queue rather than take an
// instance's room for nobody. stop ends the watch; the connection's read
// deadline is then x's deadline.
//
// It peeks: it takes no byte from the server. Data (a pipelined request;
// over TLS, any record, a close_notify alert too) ends the watch without a
// verdict, as net/http's background read does.
func (x *exchange) watchClient() (closed <-chan struct{}, stop func()) {
	c := x.ctx.Conn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, func() {}
	}
	gone := make(chan struct{})
	exited := make(chan struct{})
	var stopping atomic.Bool
	go func() {
		defer close(exited)
		var b [1]byte
		raw.Read(func(fd uintptr) bool {
			if stopping.Load() {
				return true
			}
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EAGAIN || err == syscall.EINTR:
				return false // wait until the connection is readable
			case err != nil || n == 0:
				close(gone) // reset, or EOF
			}
			return true
		})
	}()
	return gone, func() {
		stopping.Store(true)
		// A deadline in the past wakes the waiting read, as net/http's
		// abortPendingRead does.
		x.ctx.SetReadDeadline(aLongTimeAgo)
		<-exited
		x.ctx.SetReadDeadline(x.deadline)
	}
}

var aLongTimeAgo = time.Unix(1, 0)
