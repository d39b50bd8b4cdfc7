// Package version holds the version and commit of the outpost binary, set at
// link time by the Makefile.
package version

var (
	// Version is the release, or "dev" for an untagged build.
	Version = "dev"
	// Commit is the git commit the binary was built from.
	Commit = "unknown"
)
