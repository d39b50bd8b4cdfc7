// Package remoteexec runs commands in the other pods of a job: a server in
// every instance of an MPI job, and a client that Open MPI's mpirun uses as
// its rsh agent (`outpost job rsh HOST COMMAND...`) in place of ssh, as the
// MPI Operator's launchers use ssh to reach sshd in their workers.
//
// The protocol is plain TCP, authenticated with a key that both ends derive
// from the job's credential (Key): no TLS, because inside the cluster the
// threat is a stranger running commands in a job's pods, not someone
// reading a job's own output on the pod network. A connection starts with
// a challenge both ways (HMAC-SHA256 over a fresh nonce of each side, so a
// recorded exchange cannot be replayed and the key never travels), and
// every frame after it carries a MAC under a key of that session with a
// sequence number, so that a connection cannot be taken over, cut short
// or replayed once it is authenticated. What it carries is not encrypted.
//
// A session: the client sends a Request (argv, environment additions,
// working directory), then its stdin and signals; the server starts the
// command in a process group of its own and sends its stdout and stderr,
// then its exit status. A connection lost before the exit status kills the
// command's process group, as a client killed with SIGKILL cannot forward
// anything. A Request with Op "ping" only checks that the server answers;
// Op "shutdown" ends the server (Serve returns), the way the launcher tells
// the workers that mpirun is done.
package remoteexec

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultPort is where the server of every instance of an MPI job listens.
const DefaultPort = 2222

// EnvKey holds the hex-encoded key (Key) for `outpost job rsh`: the
// launcher sets it for mpirun, which passes it on to the agent.
const EnvKey = "OUTPOST_RSH_KEY"

// Key derives the remote-exec key from the job's credential, so that the
// credential itself (which also opens the job-run API) is neither sent nor
// handed to mpirun.
func Key(jobToken string) []byte {
	m := hmac.New(sha256.New, []byte(jobToken))
	m.Write([]byte("outpost.dev remote-exec v1"))
	return m.Sum(nil)
}

// Ops of a Request.
const (
	OpExec     = ""
	OpPing     = "ping"
	OpShutdown = "shutdown"
)

// Request is what a session asks of the server.
type Request struct {
	Op string `json:"op,omitempty"`
	// Argv is the command; Argv[0] is looked up in the PATH of the
	// command's environment when it has no slash.
	Argv []string `json:"argv,omitempty"`
	// Env are KEY=VALUE additions to the server's environment.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; the server's when empty.
	Dir string `json:"dir,omitempty"`
}

// exitStatus ends a session.
type exitStatus struct {
	Code int `json:"code"`
	// Error says why the command did not run (Code is then 126 or 127, as
	// a shell's).
	Error string `json:"error,omitempty"`
}

// Frame types.
const (
	frameRequest  byte = 1 // client: JSON Request
	frameStdin    byte = 2 // client: bytes
	frameStdinEOF byte = 3 // client: no more stdin
	frameSignal   byte = 4 // client: one byte, the signal number
	frameStdout   byte = 5 // server: bytes
	frameStderr   byte = 6 // server: bytes
	frameExit     byte = 7 // server: JSON exitStatus
)

const (
	nonceSize    = 32
	macSize      = 16 // of a frame: truncated HMAC-SHA256
	maxFrame     = 1 << 20
	greeting     = "OUTPOST-RX1\n"
	authOK       = 'y'
	authRefused  = 'n'
	clientLabel  = "client"
	serverLabel  = "server"
	sessionLabel = "session"
)

// ErrAuth is returned when the other end does not hold the key.
var ErrAuth = errors.New("remote exec: authentication failed (the two ends do not share the job's key)")

func newNonce() ([]byte, error) {
	n := make([]byte, nonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return n, nil
}

// proof is what one side (label) shows for the two nonces.
func proof(key []byte, label string, serverNonce, clientNonce []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(serverNonce)
	m.Write(clientNonce)
	return m.Sum(nil)
}

// framer reads and writes the MAC'd frames of one authenticated session.
// Each direction has its own sequence, so a frame cannot be replayed,
// dropped or reflected back to its sender.
type framer struct {
	rw      io.ReadWriter
	key     []byte
	sendDir byte
	recvDir byte

	wmu  sync.Mutex
	wseq uint64
	rseq uint64 // read by one goroutine only
}

func newFramer(rw io.ReadWriter, key []byte, serverNonce, clientNonce []byte, isServer bool) *framer {
	f := &framer{rw: rw, key: proof(key, sessionLabel, serverNonce, clientNonce), sendDir: 'c', recvDir: 's'}
	if isServer {
		f.sendDir, f.recvDir = 's', 'c'
	}
	return f
}

func (f *framer) mac(dir byte, seq uint64, typ byte, payload []byte) []byte {
	m := hmac.New(sha256.New, f.key)
	var hdr [14]byte
	hdr[0] = dir
	binary.BigEndian.PutUint64(hdr[1:9], seq)
	hdr[9] = typ
	binary.BigEndian.PutUint32(hdr[10:14], uint32(len(payload)))
	m.Write(hdr[:])
	m.Write(payload)
	return m.Sum(nil)[:macSize]
}

func (f *framer) write(typ byte, payload []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for {
		chunk := payload
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		buf := make([]byte, 5, 5+len(chunk)+macSize)
		buf[0] = typ
		binary.BigEndian.PutUint32(buf[1:5], uint32(len(chunk)))
		buf = append(buf, chunk...)
		buf = append(buf, f.mac(f.sendDir, f.wseq, typ, chunk)...)
		f.wseq++
		if _, err := f.rw.Write(buf); err != nil {
			return err
		}
		payload = payload[len(chunk):]
		if len(payload) == 0 {
			return nil
		}
	}
}

func (f *framer) read() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(f.rw, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("remote exec: a frame of %d bytes (at most %d)", n, maxFrame)
	}
	buf := make([]byte, int(n)+macSize)
	if _, err := io.ReadFull(f.rw, buf); err != nil {
		return 0, nil, unexpected(err)
	}
	payload, sum := buf[:n], buf[n:]
	if !hmac.Equal(sum, f.mac(f.recvDir, f.rseq, hdr[0], payload)) {
		return 0, nil, errors.New("remote exec: a frame failed its integrity check")
	}
	f.rseq++
	return hdr[0], payload, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
