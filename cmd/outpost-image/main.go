// Command outpost-image writes the container image of outpost as a tarball,
// without Docker: `make image` runs it on a static linux/amd64 build.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"outpost.dev/outpost/internal/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	binary := flag.String("binary", "", "outpost binary to ship (linux/amd64, CGO_ENABLED=0)")
	version := flag.String("version", "", "version stamped into the binary: the image is tagged outpost:<version>")
	commit := flag.String("commit", "", "commit the binary was built from")
	out := flag.String("o", "bin/outpost-image.tar", "tarball to write")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: everything is given by flags", flag.Args())
	}
	if *binary == "" {
		return errors.New("-binary is required: the path of a linux/amd64 outpost built with CGO_ENABLED=0")
	}
	// SOURCE_DATE_EPOCH is the reproducible-builds convention for a build's
	// timestamp; without it the image says 1970, and so its digest depends
	// on nothing but its contents.
	var created time.Time
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970 (e.g. `git log -1 --format=%%ct`)", s)
		}
		created = time.Unix(sec, 0)
	}
	tag, err := image.Tag(*version)
	if err != nil {
		return err
	}
	if err := image.CheckBinary(*binary); err != nil {
		return err
	}
	img, err := image.Build(image.Options{Binary: *binary, Version: *version, Commit: *commit, Created: created})
	if err != nil {
		return err
	}
	if err := image.Write(*out, tag, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: image %s (%s)\n", *out, tag.String(), digest)
	return nil
}
