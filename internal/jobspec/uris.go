package jobspec

import (
	"fmt"
	"regexp"
	"strings"

	"outpost.dev/outpost/api"
)

// DefaultOutputURI is where an output without a path goes.
func DefaultOutputURI(job, output string) string {
	return "azureml://datastores/" + api.DefaultDatastore + "/paths/azureml/" + job + "/" + output + "/"
}

// ArtifactsURI is where the ./outputs folder of a job's working directory
// is kept.
func ArtifactsURI(job string) string {
	return "azureml://datastores/" + api.DefaultDatastore + "/paths/ExperimentRun/dcid." + job + "/outputs/"
}

var outputPlaceholder = regexp.MustCompile(`\$\{\{\s*(name|output_name|default_datastore)\s*\}\}`)

// ResolveOutputPath replaces the placeholders an output path may hold:
// ${{name}} (the job's name), ${{output_name}} and ${{default_datastore}}.
// Others are left for Validate to report.
func ResolveOutputPath(path, job, output string) string {
	return outputPlaceholder.ReplaceAllStringFunc(path, func(m string) string {
		switch outputPlaceholder.FindStringSubmatch(m)[1] {
		case "name":
			return job
		case "output_name":
			return output
		default:
			return api.DefaultDatastore
		}
	})
}

var (
	// Azure ML's rule for asset, datastore and job names.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$`)
	// Asset names and versions may also hold dots (AzureML-sklearn-1.0-...).
	assetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$`)
	longURIRE   = regexp.MustCompile(`^azureml://subscriptions/[^/]+/resource[gG]roups/[^/]+/(?:providers/Microsoft\.MachineLearningServices/)?workspaces/[^/]+/datastores/`)
)

const datastoreForm = "azureml://datastores/<datastore>/paths/<path>"

// ParseDatastoreURI splits azureml://datastores/<ds>/paths/<path> (or the
// long form azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<w>/
// datastores/<ds>/paths/<path>). The path is returned as written, a
// trailing slash kept; it must be relative and hold no "." or ".."
// segment, so that one file has one path.
func ParseDatastoreURI(uri string) (datastore, path string, err error) {
	rest, ok := strings.CutPrefix(uri, "azureml://datastores/")
	if !ok {
		loc := longURIRE.FindStringIndex(uri)
		if loc == nil {
			return "", "", fmt.Errorf("%q is not a datastore URI: want %s", uri, datastoreForm)
		}
		rest = uri[loc[1]:]
	}
	datastore, path, ok = strings.Cut(rest, "/paths/")
	if !ok || !nameRE.MatchString(datastore) {
		return "", "", fmt.Errorf("%q is not a datastore URI: want %s", uri, datastoreForm)
	}
	if path == "" || path == "/" {
		return "", "", fmt.Errorf("%q names no path in datastore %s: want %s", uri, datastore, datastoreForm)
	}
	segs := strings.Split(strings.TrimSuffix(path, "/"), "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", "", fmt.Errorf("%q: the path must be relative, without empty, \".\" or \"..\" segments", uri)
		}
	}
	return datastore, path, nil
}

// ParseAssetRef splits an asset reference: "azureml:NAME:VERSION" or
// "azureml:NAME@latest".
func ParseAssetRef(ref string) (name, version string, latest bool, err error) {
	rest, ok := strings.CutPrefix(ref, "azureml:")
	if !ok || strings.HasPrefix(rest, "/") {
		return "", "", false, fmt.Errorf("%q is not an asset reference: want azureml:NAME:VERSION or azureml:NAME@latest", ref)
	}
	if n, label, ok := strings.Cut(rest, "@"); ok {
		if label != "latest" {
			return "", "", false, fmt.Errorf("%q: the only label is @latest; or give a version (azureml:NAME:VERSION)", ref)
		}
		if !assetNameRE.MatchString(n) {
			return "", "", false, fmt.Errorf("%q: bad name %q: %s", ref, n, assetNameRule)
		}
		return n, "", true, nil
	}
	n, v, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", false, fmt.Errorf("%q: give a version (azureml:NAME:VERSION) or @latest", ref)
	}
	if !assetNameRE.MatchString(n) {
		return "", "", false, fmt.Errorf("%q: bad name %q: %s", ref, n, assetNameRule)
	}
	if !assetNameRE.MatchString(v) {
		return "", "", false, fmt.Errorf("%q: bad version %q: %s", ref, v, assetNameRule)
	}
	return n, v, false, nil
}

const assetNameRule = "letters, digits, '_', '-' and '.', starting with a letter or digit, at most 255 characters"

// ComputeName is the name in "azureml:NAME" (or a plain NAME).
func ComputeName(compute string) string {
	return strings.TrimPrefix(compute, "azureml:")
}
