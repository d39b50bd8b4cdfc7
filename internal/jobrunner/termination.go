package jobrunner

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Termination message limits: the kubelet keeps 4 KiB of it.
const (
	tailLines    = 20
	maxTailBytes = 3 << 10
)

// lastLines is the end of a log: its last n lines, at most maxBytes (cut
// at a character boundary), as valid UTF-8.
func lastLines(b []byte, n, maxBytes int) string {
	b = bytes.TrimRight(b, "\r\n")
	start := len(b)
	for i := 0; i < n && start > 0; i++ {
		j := bytes.LastIndexByte(b[:start], '\n')
		start = j
		if j < 0 {
			start = 0
			break
		}
	}
	if start > 0 {
		start++ // past the newline
	}
	b = b[start:]
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// failureMessage says why a command failed: its exit code and the end of
// its output; for 127, the shell's complaint.
func failureMessage(code int, tail []byte) string {
	if code == 127 {
		if line := notFoundLine(tail); line != "" {
			return "command not found: " + line
		}
	}
	end := lastLines(tail, tailLines, maxTailBytes)
	if end == "" {
		return fmt.Sprintf("exit code %d", code)
	}
	return fmt.Sprintf("exit code %d: %s", code, end)
}

// notFoundLine is the last line of a shell's "not found" complaint (bash:
// "bash: line 1: x: command not found"; dash: "sh: 1: x: not found"), or
// the last line when there is none.
func notFoundLine(tail []byte) string {
	lines := strings.Split(lastLines(tail, tailLines, maxTailBytes), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "not found") {
			return strings.TrimSpace(lines[i])
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// writeTermination writes the message the kubelet shows as the container's
// termination message (and the training operator copies into the job's
// status).
func writeTermination(path, msg string) error {
	if len(msg) > 4000 {
		msg = msg[:4000]
		for len(msg) > 0 && !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return os.WriteFile(path, []byte(msg), 0o644)
}
