package artifacts

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// UploadOptions say which files of a folder to upload.
type UploadOptions struct {
	// Ignore honours .amlignore (else .gitignore) in the folder and each of
	// its subfolders, as Azure ML does: a file's patterns apply to its
	// folder and below, with git's rules (last match wins, "!" re-includes,
	// a leading or inner "/" anchors to the file's folder, a trailing "/"
	// matches folders only; a file in an excluded folder stays excluded).
	Ignore bool
	// MaxBytes refuses a folder whose files add up to more (0: no limit).
	MaxBytes int64
}

// LocalFile is a file to upload.
type LocalFile struct {
	Rel    string // slash-separated, relative to the folder
	Abs    string // where to read it (the target, for a symbolic link)
	Size   int64
	SHA256 string // hex
	// Mode is 0755 when any execute bit is set, else 0644 (as git keeps
	// it), so that a folder's digest does not depend on the umask.
	Mode uint32
}

// ignoreFiles are read in this order; the first one present in a folder is
// used.
var ignoreFiles = []string{".amlignore", ".gitignore"}

// Scan lists the files of dir to upload, sorted by Rel, with their sizes and
// digests. ".git" is never uploaded. A symbolic link to a file is uploaded
// as that file; a link to a folder is refused (following it could loop or
// leave the folder: replace it by the folder or ignore it), as are dangling
// links and special files (sockets, pipes, devices). The limit is checked
// before any file is read.
func Scan(dir string, o UploadOptions) ([]LocalFile, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", dir)
	}
	var files []LocalFile
	if err := walk(dir, dir, nil, nil, o, &files); err != nil {
		return nil, err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	if o.MaxBytes > 0 && total > o.MaxBytes {
		return nil, tooBig(dir, files, total, o.MaxBytes)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	for i := range files {
		sum, err := hashFile(files[i].Abs)
		if err != nil {
			return nil, err
		}
		files[i].SHA256 = sum
	}
	return files, nil
}

func walk(root, dir string, rel []string, patterns []gitignore.Pattern, o UploadOptions, out *[]LocalFile) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var m gitignore.Matcher
	if o.Ignore {
		ps, err := readIgnore(dir, rel)
		if err != nil {
			return err
		}
		// A copy: sibling folders must not see each other's patterns.
		patterns = append(patterns[:len(patterns):len(patterns)], ps...)
		m = gitignore.NewMatcher(patterns)
	}
	for _, e := range entries {
		name := e.Name()
		if name == ".git" {
			continue
		}
		segs := append(rel[:len(rel):len(rel)], name)
		abs := filepath.Join(dir, name)
		relPath := strings.Join(segs, "/")
		info, err := os.Lstat(abs)
		if err != nil {
			return err
		}
		mode := info.Mode()
		if mode&fs.ModeSymlink != 0 {
			target, err := os.Stat(abs)
			if err != nil {
				if m != nil && m.Match(segs, false) {
					continue
				}
				return fmt.Errorf("%s: a symbolic link whose target cannot be read: %w", abs, err)
			}
			if target.IsDir() {
				if m != nil && m.Match(segs, true) {
					continue
				}
				return fmt.Errorf("%s: a symbolic link to a folder is not uploaded: replace it by the folder, or list it in .amlignore", abs)
			}
			info, mode = target, target.Mode()
		}
		if m != nil && m.Match(segs, mode.IsDir()) {
			continue
		}
		switch {
		case mode.IsDir():
			if err := walk(root, abs, segs, patterns, o, out); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := CheckPath(relPath); err != nil {
				return fmt.Errorf("%s: %w", abs, err)
			}
			fm := uint32(0o644)
			if mode.Perm()&0o111 != 0 {
				fm = 0o755
			}
			*out = append(*out, LocalFile{Rel: relPath, Abs: abs, Size: info.Size(), Mode: fm})
		default:
			return fmt.Errorf("%s: a %s cannot be uploaded (only files and folders): list it in .amlignore", abs, kindOf(mode))
		}
	}
	return nil
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// readIgnore parses the ignore file of dir, if any; its patterns apply
// below rel.
func readIgnore(dir string, rel []string) ([]gitignore.Pattern, error) {
	for _, name := range ignoreFiles {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var ps []gitignore.Pattern
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSuffix(sc.Text(), "\r")
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			ps = append(ps, gitignore.ParsePattern(line, rel))
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		return ps, nil
	}
	return nil, nil
}

func tooBig(dir string, files []LocalFile, total, limit int64) error {
	big := append([]LocalFile(nil), files...)
	sort.Slice(big, func(i, j int) bool { return big[i].Size > big[j].Size })
	if len(big) > 5 {
		big = big[:5]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s holds %s in %d files, more than the limit of %s; the largest:", dir, humanBytes(total), len(files), humanBytes(limit))
	for _, f := range big {
		fmt.Fprintf(&b, "\n  %s (%s)", f.Rel, humanBytes(f.Size))
	}
	b.WriteString("\nlist what the job does not need in a .amlignore file in the folder (the syntax of .gitignore)")
	return errors.New(b.String())
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TreeDigest names a folder by its content: the sha256 (hex) over each
// file's path, mode and digest, in path order. Equal folders get equal
// digests wherever they are; any change of a name, mode or byte changes it.
func TreeDigest(files []LocalFile) string {
	sorted := append([]LocalFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Rel < sorted[j].Rel })
	h := sha256.New()
	for _, f := range sorted {
		// The path is length-prefixed: any byte may be in a name.
		fmt.Fprintf(h, "%s %o %d:%s\n", f.SHA256, f.Mode, len(f.Rel), f.Rel)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
