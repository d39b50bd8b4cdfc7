package remoteexec

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Conn is an authenticated session with a server, for one request.
type Conn struct {
	conn net.Conn
	f    *framer
}

// Dial connects to addr (host:port) and authenticates both ways with key.
func Dial(ctx context.Context, addr string, key []byte) (*Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	f, err := clientHandshake(ctx, conn, key)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return &Conn{conn: conn, f: f}, nil
}

func clientHandshake(ctx context.Context, conn net.Conn, key []byte) (*framer, error) {
	deadline := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	hello := make([]byte, len(greeting)+nonceSize)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return nil, fmt.Errorf("reading the server's greeting: %w", unexpected(err))
	}
	if string(hello[:len(greeting)]) != greeting {
		return nil, errors.New("the server does not speak Outpost's remote-exec protocol")
	}
	sn := hello[len(greeting):]
	cn, err := newNonce()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(cn, proof(key, clientLabel, sn, cn)...)); err != nil {
		return nil, err
	}
	want := proof(key, serverLabel, sn, cn)
	ans := make([]byte, 1+len(want))
	if _, err := io.ReadFull(conn, ans[:1]); err != nil {
		return nil, fmt.Errorf("reading the server's answer: %w", unexpected(err))
	}
	if ans[0] != authOK {
		return nil, ErrAuth
	}
	if _, err := io.ReadFull(conn, ans[1:]); err != nil {
		return nil, fmt.Errorf("reading the server's answer: %w", unexpected(err))
	}
	if !hmac.Equal(ans[1:], want) {
		return nil, ErrAuth
	}
	conn.SetDeadline(time.Time{})
	return newFramer(conn, key, sn, cn, false), nil
}

// Close ends the session; a command still running is killed.
func (c *Conn) Close() error { return c.conn.Close() }

// RemoteAddr is the server's address as connected.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// Run sends req and runs the session to its end: stdin (nil: none) goes to
// the command, its output to stdout and stderr, the signals received on
// signals (nil: none) to its process group. It returns the command's exit
// code; an error when the session broke, or when the command could not be
// started (with the code a shell gives: 126, or 127 for not found).
func (c *Conn) Run(req Request, stdin io.Reader, stdout, stderr io.Writer, signals <-chan os.Signal) (int, error) {
	defer c.conn.Close()
	b, err := json.Marshal(req)
	if err != nil {
		return 1, err
	}
	if err := c.f.write(frameRequest, b); err != nil {
		return 1, err
	}
	if req.Op == OpExec {
		if stdin != nil {
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, rerr := stdin.Read(buf)
					if n > 0 && c.f.write(frameStdin, buf[:n]) != nil {
						return
					}
					if rerr != nil {
						// EOF or not, the command's stdin ends here.
						c.f.write(frameStdinEOF, nil)
						return
					}
				}
			}()
		} else if err := c.f.write(frameStdinEOF, nil); err != nil {
			return 1, err
		}
		if signals != nil {
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					case sig := <-signals:
						if n, ok := sig.(syscall.Signal); ok && n > 0 && n < 65 {
							if c.f.write(frameSignal, []byte{byte(n)}) != nil {
								return
							}
						}
					}
				}
			}()
		}
	}
	for {
		typ, payload, err := c.f.read()
		if err != nil {
			return 1, fmt.Errorf("remote exec: the session ended before the command's exit status: %w", unexpected(err))
		}
		switch typ {
		case frameStdout:
			if _, err := stdout.Write(payload); err != nil {
				return 1, err
			}
		case frameStderr:
			if _, err := stderr.Write(payload); err != nil {
				return 1, err
			}
		case frameExit:
			var st exitStatus
			if err := json.Unmarshal(payload, &st); err != nil {
				return 1, fmt.Errorf("remote exec: the exit status: %w", err)
			}
			if st.Error != "" {
				return st.Code, errors.New(st.Error)
			}
			return st.Code, nil
		default:
			return 1, fmt.Errorf("remote exec: unexpected frame type %d from the server", typ)
		}
	}
}

// Ping checks that the server at addr answers and holds key.
func Ping(ctx context.Context, addr string, key []byte) (net.Addr, error) {
	c, err := Dial(ctx, addr, key)
	if err != nil {
		return nil, err
	}
	ra := c.RemoteAddr()
	stopOnDone(ctx, c)
	_, err = c.Run(Request{Op: OpPing}, nil, io.Discard, io.Discard, nil)
	return ra, err
}

// Shutdown asks the server at addr to stop serving.
func Shutdown(ctx context.Context, addr string, key []byte) error {
	c, err := Dial(ctx, addr, key)
	if err != nil {
		return err
	}
	stopOnDone(ctx, c)
	_, err = c.Run(Request{Op: OpShutdown}, nil, io.Discard, io.Discard, nil)
	return err
}

// stopOnDone closes c when ctx ends, so that a request never outlives it.
func stopOnDone(ctx context.Context, c *Conn) {
	if ctx.Done() == nil {
		return
	}
	context.AfterFunc(ctx, func() { c.conn.Close() })
}
