package remoteexec

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// exitRSH is what RSH exits with when it could not run the command, as
// ssh does (255), so that it is not taken for the command's own code.
const exitRSH = 255

// rshDialFor bounds the retries of a connection that is refused or times
// out: the launcher waited for every server already, so this only covers
// a blip (tests shorten it).
var rshDialFor = 10 * time.Second

// RSH is `outpost job rsh [OPTIONS] HOST COMMAND...`, the rsh agent that
// mpirun starts as `agent HOST orted ...`: it runs COMMAND on HOST's server
// (port DefaultPort, or -p PORT) as ssh would, its words joined by spaces
// and given to `/bin/sh -c`, so that the quoting Open MPI does for ssh
// means the same here. The key comes from getenv(EnvKey). Options that ssh
// takes and Open MPI or users pass (-x, -n, -T, -q, -l USER, -o OPTION...)
// are accepted and have no effect here. It returns the command's exit code,
// or 255 when it could not run it (the reason on stderr).
func RSH(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "outpost job rsh: "+format+"\n", a...)
		return exitRSH
	}
	host, port, command, err := parseRSH(args)
	if err != nil {
		return fail("%v", err)
	}
	keyHex := strings.TrimSpace(getenv(EnvKey))
	if keyHex == "" {
		return fail("%s is not set: this command is the rsh agent of mpirun in an Outpost MPI job, whose launcher sets it", EnvKey)
	}
	key, err := hex.DecodeString(keyHex)
	if err != nil || len(key) < 16 {
		// The value is a secret: name the variable, never show it.
		return fail("%s: want the hex key the launcher sets", EnvKey)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var c *Conn
	deadline := time.Now().Add(rshDialFor)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		c, err = Dial(ctx, addr, key)
		if err == nil || errors.Is(err, ErrAuth) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if err != nil {
		return fail("%v", err)
	}
	stopOnDone(ctx, c)
	code, err := c.Run(Request{Argv: []string{"/bin/sh", "-c", command}}, stdin, stdout, stderr, signals)
	if err != nil {
		if code == 126 || code == 127 {
			fmt.Fprintf(stderr, "outpost job rsh: %s: %v\n", host, err)
			return code
		}
		return fail("%s: %v", host, err)
	}
	return code
}

// parseRSH reads ssh's command line: options, [USER@]HOST, the command.
func parseRSH(args []string) (host string, port int, command string, err error) {
	port = DefaultPort
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-") && len(args[i]) > 1; i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		switch a[1] {
		case 'x', 'X', 'Y', 'n', 'T', 't', 'q', 'a', 'A', 'C', '4', '6', 'k', 'K', 'v':
			// Flags, possibly grouped (-xn): nothing to do here.
			for _, ch := range a[1:] {
				if !strings.ContainsRune("xXYnTtqaAC46kKv", ch) {
					return "", 0, "", fmt.Errorf("option %s: unknown flag -%c (flags taken: -x -n -T -t -q, and -p PORT, -l USER, -o OPTION)", a, ch)
				}
			}
		case 'p', 'l', 'o', 'i', 'F', 'E', 'c', 'm', 'b':
			val := a[2:]
			if val == "" {
				i++
				if i >= len(args) {
					return "", 0, "", fmt.Errorf("option %s needs a value", a)
				}
				val = args[i]
			}
			if a[1] == 'p' {
				n, perr := strconv.Atoi(val)
				if perr != nil || n < 1 || n > 65535 {
					return "", 0, "", fmt.Errorf("option -p %q: want a port number", val)
				}
				port = n
			}
		default:
			return "", 0, "", fmt.Errorf("unknown option %s (taken: -x -n -T -t -q, -p PORT, -l USER, -o OPTION)", a)
		}
	}
	if i >= len(args) {
		return "", 0, "", errors.New("usage: outpost job rsh [OPTIONS] HOST COMMAND...: no host given")
	}
	host = args[i]
	if _, h, ok := strings.Cut(host, "@"); ok {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return "", 0, "", fmt.Errorf("host %q: empty", args[i])
	}
	words := args[i+1:]
	if len(words) == 0 {
		return "", 0, "", fmt.Errorf("no command for %s: a login session is not supported", host)
	}
	return host, port, strings.Join(words, " "), nil
}
