package container

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenPTY opens a new pseudo-terminal: the node keeps the master, the
// command in the container gets the terminal. (No pty library is available
// to this module; these are the three calls of posix_openpt, unlockpt and
// ptsname.) The master is opened through os so that reads honour deadlines.
func OpenPTY() (master, terminal *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	var ioctlErr error
	if err := controlFd(master, func(fd int) {
		if ioctlErr = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); ioctlErr == nil {
			n, ioctlErr = unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		}
	}); err != nil || ioctlErr != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty: %w", errors.Join(err, ioctlErr))
	}
	terminal, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, terminal, nil
}

// ResizePTY sets the terminal size the command sees (and signals SIGWINCH
// to it).
func ResizePTY(master *os.File, cols, rows uint16) error {
	var ioctlErr error
	if err := controlFd(master, func(fd int) {
		ioctlErr = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	return ioctlErr
}

// controlFd runs f on the file's descriptor without File.Fd, which would
// switch it to blocking mode and so disable deadlines.
func controlFd(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}
