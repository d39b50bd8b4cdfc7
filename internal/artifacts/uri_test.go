package artifacts

import (
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		uri, ds, path string
		err           string // a part of the error; "" for none
	}{
		{uri: "azureml://datastores/workspaceblobstore/paths/a/b.csv", ds: "workspaceblobstore", path: "a/b.csv"},
		{uri: "azureml://datastores/workspaceblobstore/paths/a/b/", ds: "workspaceblobstore", path: "a/b/"},
		{uri: "azureml://datastores/ds/paths/", ds: "ds", path: ""},
		{uri: "azureml://datastores/ds/paths", ds: "ds", path: ""},
		// Only the first /paths/ separates: the rest is the path.
		{uri: "azureml://datastores/ds/paths/x/paths/y", ds: "ds", path: "x/paths/y"},
		{uri: "azureml://subscriptions/s1/resourcegroups/rg/workspaces/ws/datastores/ds/paths/LocalUpload/abc/src/", ds: "ds", path: "LocalUpload/abc/src/"},
		{uri: "azureml://subscriptions/s1/resourceGroups/rg/workspaces/ws/datastores/ds/paths/f", ds: "ds", path: "f"},
		{uri: "https://datastores/ds/paths/f", err: "want azureml://datastores/<datastore>/paths/<path> or azureml://subscriptions/"},
		{uri: "azureml://datastores/ds/f", err: "has no /paths/"},
		{uri: "azureml://datastores//paths/f", err: "names no datastore"},
		{uri: "azureml://stores/ds/paths/f", err: "want azureml://datastores/"},
		{uri: "azureml://subscriptions//resourcegroups/rg/workspaces/ws/datastores/ds/paths/f", err: "want azureml://"},
		{uri: "azureml://datastores/ds/paths/../etc/passwd", err: `".." segments are not allowed`},
		{uri: "azureml://datastores/ds/paths/a//b", err: "empty segment"},
		{uri: "azureml://datastores/ds/paths//a", err: "must be relative"},
		{uri: "azureml://datastores/ds/paths/a/./b", err: `"." segments`},
	} {
		ds, p, err := ParseURI(tc.uri)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseURI(%q): %v", tc.uri, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseURI(%q) = %q, %q, %v; want an error with %q", tc.uri, ds, p, err, tc.err)
		case tc.err == "" && (ds != tc.ds || p != tc.path):
			t.Errorf("ParseURI(%q) = %q, %q; want %q, %q", tc.uri, ds, p, tc.ds, tc.path)
		}
	}
}

func TestURIRoundTrip(t *testing.T) {
	for _, p := range []string{"a", "a/b/", "LocalUpload/0f/src/", "100% _done_/x"} {
		u := URI(Datastore, p)
		if want := "azureml://datastores/workspaceblobstore/paths/" + p; u != want {
			t.Errorf("URI(%q) = %q, want %q", p, u, want)
		}
		ds, got, err := ParseURI(u)
		if err != nil || ds != Datastore || got != p {
			t.Errorf("ParseURI(URI(%q)) = %q, %q, %v", p, ds, got, err)
		}
	}
}
