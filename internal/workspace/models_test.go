package workspace

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
)

func TestModelVersionsArchiveAndLatest(t *testing.T) {
	c, _ := startWith(t, Options{DataDir: t.TempDir(), Heartbeat: 30 * time.Second})
	ctx := context.Background()
	upload(t, c, map[string]string{"model/m.pkl": "m1", "model/conf.json": "{}", "m2.pkl": "m2", "mlf/MLmodel": "flavors: {}", "notmlflow/x": "x",
		"ExperimentRun/dcid.train-1/outputs/model/m.pkl": "trained"})
	put := func(version string, d doc) (api.Model, error) {
		t.Helper()
		var m api.Model
		err := c.Do(ctx, "PUT", wsPath+"/models/sk/versions/"+version, d, &m)
		return m, err
	}
	m1, err := put("1", doc{"path": wsBlob + "model/", "description": "first"})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Type != api.ModelCustom || m1.Name != "sk" || m1.Version != "1" || m1.Stage != "" || m1.ID != wsPath+"/models/sk/versions/1" {
		t.Fatalf("v1: %+v", m1)
	}
	var m2 api.Model
	if err := c.Do(ctx, "POST", wsPath+"/models/sk/versions", doc{"path": wsBlob + "m2.pkl"}, &m2); err != nil || m2.Version != "2" {
		t.Fatalf("next version: %+v %v", m2, err)
	}
	// Versions are immutable; the same content again is accepted.
	if _, err := put("1", doc{"path": wsBlob + "model/", "description": "first"}); err != nil {
		t.Fatalf("the same version again: %v", err)
	}
	_, err = put("1", doc{"path": wsBlob + "m2.pkl"})
	wantErr(t, "other content for a version", err, http.StatusConflict, "versions are immutable")
	for _, tc := range []struct {
		name  string
		d     doc
		wants string
	}{
		{"no path", doc{}, "path is required"},
		{"a path not uploaded", doc{"path": wsBlob + "nothere/"}, "not found in datastore"},
		{"an unknown type", doc{"path": wsBlob + "m2.pkl", "type": "onnx_model"}, "custom_model (the default), mlflow_model or triton_model"},
		{"an MLflow model without MLmodel", doc{"path": wsBlob + "notmlflow/", "type": "mlflow_model"}, "has no MLmodel file"},
		{"a stage", doc{"path": wsBlob + "m2.pkl", "stage": "Archived"}, "set by `outpost ml model archive`"},
		{"a run that is not there", doc{"path": "runs:/nojob/model"}, "job nojob has no artifact model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := put("9", tc.d)
			wantErr(t, tc.name, err, http.StatusBadRequest, tc.wants)
		})
	}
	if m, err := put("3", doc{"path": wsBlob + "mlf/", "type": "mlflow_model"}); err != nil || m.Type != api.ModelMLflow {
		t.Fatalf("an MLflow model: %+v %v", m, err)
	}
	// runs:/<job>/<path>: what the job kept in ./outputs.
	if m, err := put("4", doc{"path": "runs:/train-1/model"}); err != nil || m.Path != wsBlob+"ExperimentRun/dcid.train-1/outputs/model/" {
		t.Fatalf("a model of a run: %+v %v", m, err)
	}

	latest := func() string {
		t.Helper()
		var m api.Model
		if err := c.Do(ctx, "GET", wsPath+"/models/sk", nil, &m); err != nil {
			t.Fatal(err)
		}
		return m.Version
	}
	versions := func(query string) string {
		t.Helper()
		var ms []api.Model
		if err := c.Do(ctx, "GET", wsPath+"/models/sk/versions"+query, nil, &ms); err != nil {
			t.Fatal(err)
		}
		var vs []string
		for _, m := range ms {
			vs = append(vs, m.Version+m.Stage)
		}
		return strings.Join(vs, " ")
	}
	if v := latest(); v != "4" {
		t.Fatalf("latest: %s", v)
	}
	// Archived versions: shown when asked for, passed over by @latest.
	var arch api.Model
	for _, v := range []string{"4", "3"} {
		if err := c.Do(ctx, "POST", wsPath+"/models/sk/versions/"+v+"/archive", nil, &arch); err != nil || arch.Stage != api.ModelArchived {
			t.Fatalf("archive %s: %+v %v", v, arch, err)
		}
	}
	if v := latest(); v != "2" {
		t.Fatalf("latest after archiving 3 and 4: %s", v)
	}
	if got := versions(""); got != "2 1" {
		t.Fatalf("versions: %s", got)
	}
	if got := versions("?includeArchived=true"); got != "4Archived 3Archived 2 1" {
		t.Fatalf("versions with archived: %s", got)
	}
	if got := versions("?archivedOnly=true"); got != "4Archived 3Archived" {
		t.Fatalf("archived versions: %s", got)
	}
	var one api.Model
	if err := c.Do(ctx, "GET", wsPath+"/models/sk/versions/4", nil, &one); err != nil || one.Stage != api.ModelArchived {
		t.Fatalf("show an archived version: %+v %v", one, err)
	}
	// Every version archived: @latest names none, and the list hides it.
	var all []api.Model
	if err := c.Do(ctx, "POST", wsPath+"/models/sk/archive", nil, &all); err != nil || len(all) != 4 {
		t.Fatalf("archive all: %d %v", len(all), err)
	}
	err = c.Do(ctx, "GET", wsPath+"/models/sk", nil, nil)
	wantErr(t, "latest of an archived model", err, http.StatusNotFound, "every version of model sk is archived (1, 2, 3, 4)", "restore")
	var list []api.Model
	if err := c.Do(ctx, "GET", wsPath+"/models", nil, &list); err != nil || len(list) != 0 {
		t.Fatalf("list of archived models: %+v %v", list, err)
	}
	if err := c.Do(ctx, "GET", wsPath+"/models?includeArchived=true", nil, &list); err != nil || len(list) != 1 || list[0].Version != "4" {
		t.Fatalf("list with archived: %+v %v", list, err)
	}
	var restored api.Model
	if err := c.Do(ctx, "POST", wsPath+"/models/sk/versions/1/restore", nil, &restored); err != nil || restored.Stage != "" || restored.Version != "1" {
		t.Fatalf("restore: %+v %v", restored, err)
	}
	if v := latest(); v != "1" {
		t.Fatalf("latest after restoring 1: %s", v)
	}
	err = c.Do(ctx, "POST", wsPath+"/models/sk/versions/7/archive", nil, nil)
	wantErr(t, "archiving a version that is not there", err, http.StatusNotFound, "model sk version 7 not found; versions: 1, 2, 3, 4")
	err = c.Do(ctx, "GET", wsPath+"/models/sk/versions?includeArchived=maybe", nil, nil)
	wantErr(t, "a bad flag", err, http.StatusBadRequest, "want true or false")
}
