package scoring

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/artifacts"
)

// fetchModel downloads the model into m.dest, fresh (a restarted container
// finds the last one's files there), and checks every file against the
// digest of the listing. The client checks each file as it arrives against
// the digest the server sends with it; checking against the listing too
// means a model path changed between the listing and the download fails
// instead of mixing two versions.
func fetchModel(ctx context.Context, store *artifacts.Client, m *modelPlan) (int, error) {
	if err := os.RemoveAll(m.dir); err != nil {
		return 0, fmt.Errorf("clearing %s: %w", m.dir, err)
	}
	uri := artifacts.URI(m.from.ds, m.from.path)
	listed, err := store.List(ctx, m.from.ds, m.from.path)
	if err != nil {
		return 0, fmt.Errorf("listing the model %s: %w", uri, err)
	}
	n, err := store.Download(ctx, m.from.ds, m.from.path, m.dest)
	if err != nil {
		return 0, fmt.Errorf("downloading the model %s: %w", uri, err)
	}
	want, err := localNames(listed, m.from.path)
	if err != nil {
		return 0, fmt.Errorf("the model %s: %w", uri, err)
	}
	// Named as the script sees them: below AZUREML_MODEL_DIR.
	if rel, err := filepath.Rel(m.dir, m.dest); err == nil && rel != "." {
		below := make(map[string]string, len(want))
		for k, v := range want {
			below[filepath.ToSlash(rel)+"/"+k] = v
		}
		want = below
	}
	if err := verifyTree(m.dir, want); err != nil {
		return 0, fmt.Errorf("the model %s: %w", uri, err)
	}
	return n, nil
}

// localNames maps a listing of prefix to the files a download of prefix
// writes (artifacts.Client.Download's rule: a prefix ending in "/" is a
// folder; another is the file of that name, kept as its base name, else
// the folder of that name), each with its listed digest.
func localNames(listed []api.FileInfo, prefix string) (map[string]string, error) {
	folder := prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		folder = prefix + "/"
		for _, f := range listed {
			if f.Path == prefix {
				return map[string]string{path.Base(prefix): f.SHA256}, nil
			}
		}
	}
	want := map[string]string{}
	for _, f := range listed {
		rel, ok := strings.CutPrefix(f.Path, folder)
		if !ok {
			return nil, fmt.Errorf("the listing holds %s, which is not under %s", f.Path, folder)
		}
		want[rel] = f.SHA256
	}
	if len(want) == 0 {
		return nil, errors.New("no files")
	}
	return want, nil
}

// verifyTree checks that dir holds exactly the files of want (relative
// slash paths), each with its sha256.
func verifyTree(dir string, want map[string]string) error {
	seen := map[string]bool{}
	var errs []error
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		sum, ok := want[rel]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s is not in the listing", rel))
		case !d.Type().IsRegular():
			errs = append(errs, fmt.Errorf("%s is not a regular file", rel))
		default:
			seen[rel] = true
			got, err := hashFile(p)
			if err != nil {
				return err
			}
			if got != sum {
				errs = append(errs, fmt.Errorf("%s has sha256 %s, the listing says %s", rel, got, sum))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var missing []string
	for rel := range want {
		if !seen[rel] {
			missing = append(missing, rel)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		errs = append(errs, fmt.Errorf("not downloaded: %s", strings.Join(missing, ", ")))
	}
	return errors.Join(errs...)
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fetchCode downloads the code folder into dir, fresh, and checks that
// the scoring script is in it.
func fetchCode(ctx context.Context, store *artifacts.Client, code location, script, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing %s: %w", dir, err)
	}
	uri := artifacts.URI(code.ds, code.path)
	if _, err := store.Download(ctx, code.ds, code.path, dir); err != nil {
		return fmt.Errorf("downloading the code %s: %w", uri, err)
	}
	st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(script)))
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("the scoring script %s is not in the code folder %s", script, uri)
	}
	return nil
}
