package workspace

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/client"
	"outpost.dev/outpost/internal/endpointauth"
)

// routerFacts are the facts of a cluster whose ML extension serves
// inference: trainingFacts and the router's address.
func routerFacts() api.ClusterFacts {
	f := trainingFacts
	f.InferenceRouter = &api.InferenceRouter{BaseURL: "https://127.0.0.1:30443", CertificatePEM: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", Ready: true}
	return f
}

// serving is a workspace with cluster c1 connected, its ML extension
// serving inference, attached as compute k8s, and its fake agent, which
// reports facts.
type serving struct {
	t        *testing.T
	dir      string
	c, agent *client.Client
	rev      int64
	facts    api.ClusterFacts
}

func newServing(t *testing.T) *serving {
	t.Helper()
	dir := t.TempDir()
	c, _ := startWith(t, Options{DataDir: dir, Heartbeat: 30 * time.Second})
	sv := &serving{t: t, dir: dir, c: c, agent: register(t, c, "rg", "c1"), facts: routerFacts()}
	sv.install("c1", sv.agent)
	if _, err := attachTo(t, c, "k8s", "c1", "default"); err != nil {
		t.Fatal(err)
	}
	sv.sync()
	waitCompute(t, c, "rg", "ws", "k8s", api.StateSucceeded, "")
	return sv
}

// install creates the ML extension with training and inference on a
// cluster, and has its agent report it Installed.
func (sv *serving) install(cluster string, agent *client.Client) {
	sv.t.Helper()
	if err := sv.c.Do(context.Background(), "PUT", "/resourceGroups/rg/connectedClusters/"+cluster+"/extensions/ml",
		req(map[string]string{"enableTraining": "True", "enableInference": "True", "allowInsecureConnections": "True"}, nil), nil); err != nil {
		sv.t.Fatal(err)
	}
	d := syncSince(sv.t, agent, "rg", cluster, 0)
	report(sv.t, agent, "rg", cluster, api.AgentReport{Revision: d.Revision, Facts: sv.facts, Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}})
	if agent == sv.agent {
		sv.rev = d.Revision
	}
}

// sync has the agent take what changed and report, with its facts and the
// deployments' states given.
func (sv *serving) sync(deployments ...api.DeploymentReport) api.SyncResponse {
	sv.t.Helper()
	d := syncSince(sv.t, sv.agent, "rg", "c1", sv.rev)
	sv.rev = d.Revision
	sv.report(deployments...)
	return d
}

func (sv *serving) report(deployments ...api.DeploymentReport) {
	sv.t.Helper()
	report(sv.t, sv.agent, "rg", "c1", api.AgentReport{Revision: sv.rev, Facts: sv.facts, Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}, Deployments: deployments})
}

const epPath = wsPath + "/onlineEndpoints/"

func (sv *serving) createEndpoint(name string, d doc) (api.OnlineEndpoint, error) {
	sv.t.Helper()
	var e api.OnlineEndpoint
	err := sv.c.Do(context.Background(), "PUT", epPath+name, d, &e)
	return e, err
}

func (sv *serving) endpoint(name string) api.OnlineEndpoint {
	sv.t.Helper()
	var e api.OnlineEndpoint
	if err := sv.c.Do(context.Background(), "GET", epPath+name, nil, &e); err != nil {
		sv.t.Fatal(err)
	}
	return e
}

func (sv *serving) patchEndpoint(name string, d doc) (api.OnlineEndpoint, error) {
	sv.t.Helper()
	var e api.OnlineEndpoint
	err := sv.c.Do(context.Background(), "PATCH", epPath+name, d, &e)
	return e, err
}

// desired finds an object of a kind in a sync answer by its name.
func desiredObject(d api.SyncResponse, kind, name string) *api.DesiredObject {
	for i, o := range d.Objects {
		if o.Kind != kind {
			continue
		}
		if o.OnlineEndpoint != nil && o.OnlineEndpoint.Name == name || o.OnlineDeployment != nil && o.OnlineDeployment.Name == name {
			return &d.Objects[i]
		}
	}
	return nil
}

func deletedRef(d api.SyncResponse, kind, id string) bool {
	for _, r := range d.Deleted {
		if r.Kind == kind && r.ID == id {
			return true
		}
	}
	return false
}

// wantErr checks that err is a refusal with code whose message holds
// every one of wants.
func wantErr(t *testing.T, what string, err error, code int, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want %d", what, code)
	}
	if got := statusOf(err); got != code {
		t.Fatalf("%s: %d %v, want %d", what, got, err, code)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%s: %q, want it to say %q", what, err.Error(), w)
		}
	}
}

func TestEndpointCreateRefusedWithReasons(t *testing.T) {
	sv := newServing(t)
	// A second cluster whose extension trains only.
	agent2 := register(t, sv.c, "rg", "c2")
	installed(t, sv.c, agent2, "rg", "c2", "default")
	if _, err := attachTo(t, sv.c, "train", "c2", "default"); err != nil {
		t.Fatal(err)
	}
	report(t, agent2, "rg", "c2", api.AgentReport{Revision: syncSince(t, agent2, "rg", "c2", 0).Revision, Facts: trainingFacts, Namespaces: []string{"default"},
		Extensions: []api.ExtensionReport{{Name: "ml", Generation: 1, InstallState: api.InstallInstalled}}})
	waitCompute(t, sv.c, "rg", "ws", "train", api.StateSucceeded, "")

	good := doc{"compute": "azureml:k8s"}
	for _, tc := range []struct {
		name, ep string
		d        doc
		code     int
		wants    []string
	}{
		{"too short a name", "ab", good, http.StatusBadRequest, []string{"3-32 characters"}},
		{"a name starting with a digit", "1abc", good, http.StatusBadRequest, []string{"a letter first"}},
		{"aad_token", "ep1", doc{"compute": "azureml:k8s", "auth_mode": "AAD_Token"}, http.StatusBadRequest, []string{"auth_mode: aad_token is not supported on Kubernetes online endpoints, which take key or aml_token"}},
		{"an unknown auth mode", "ep1", doc{"compute": "azureml:k8s", "auth_mode": "password"}, http.StatusBadRequest, []string{"auth_mode", "key or aml_token"}},
		{"traffic at creation", "ep1", doc{"compute": "azureml:k8s", "traffic": doc{"blue": 100}}, http.StatusBadRequest, []string{"traffic: cannot be set when an endpoint is created"}},
		{"mirror traffic", "ep1", doc{"compute": "azureml:k8s", "mirror_traffic": doc{"blue": 10}}, http.StatusBadRequest, []string{"mirror traffic is not supported on Kubernetes online endpoints"}},
		{"no compute", "ep1", doc{}, http.StatusBadRequest, []string{"compute: required"}},
		{"an unknown compute", "ep1", doc{"compute": "azureml:nope"}, http.StatusBadRequest, []string{"compute nope not found in workspace ws; computes: k8s, train"}},
		{"a cluster without inference", "ep1", doc{"compute": "azureml:train"}, http.StatusBadRequest, []string{"Inference feature is not enabled on cluster c2", "enableInference=True"}},
		{"an unknown field", "ep1", doc{"compute": "azureml:k8s", "auth": "key"}, http.StatusBadRequest, []string{`auth: unknown field "auth"`}},
		{"a shown field", "ep1", doc{"compute": "azureml:k8s", "scoring_uri": "http://x"}, http.StatusBadRequest, []string{"scoring_uri: shown by the workspace"}},
		{"another name in the body", "ep1", doc{"compute": "azureml:k8s", "name": "ep2"}, http.StatusBadRequest, []string{`"ep2" differs`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sv.createEndpoint(tc.ep, tc.d)
			wantErr(t, tc.name, err, tc.code, tc.wants...)
		})
	}
	var all []api.OnlineEndpoint
	if err := sv.c.Do(context.Background(), "GET", wsPath+"/onlineEndpoints", nil, &all); err != nil || len(all) != 0 {
		t.Fatalf("after refusals: %v %v, want no endpoint", all, err)
	}
}

func TestEndpointLifecycle(t *testing.T) {
	sv := newServing(t)
	ctx := context.Background()
	e, err := sv.createEndpoint("my-ep", doc{"compute": "azureml:k8s", "auth_mode": "Key", "description": "d", "tags": doc{"n": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if e.ProvisioningState != api.StateCreating || e.AuthMode != api.AuthModeKey || e.Kind != "K8s" || e.Tags["n"] != "1" {
		t.Fatalf("created: %+v", e)
	}
	if e.ScoringURI != "https://127.0.0.1:30443/api/v1/endpoint/my-ep/score" || e.SwaggerURI != "https://127.0.0.1:30443/api/v1/endpoint/my-ep/swagger.json" {
		t.Fatalf("URIs: %s %s", e.ScoringURI, e.SwaggerURI)
	}
	// The agent gets it with its keys; it is Succeeded once the agent
	// confirms that revision.
	d := sv.sync()
	obj := desiredObject(d, api.KindOnlineEndpoint, "my-ep")
	if obj == nil {
		t.Fatalf("no endpoint in %+v", d)
	}
	de := obj.OnlineEndpoint
	if obj.ID != wsPath+"/onlineEndpoints/my-ep" || de.Namespace != "default" || de.AuthMode != "key" || de.PrimaryKey == "" || de.SecondaryKey == "" || de.PrimaryKey == de.SecondaryKey || de.TokenKey != "" {
		t.Fatalf("desired endpoint: %+v", de)
	}
	if e := sv.endpoint("my-ep"); e.ProvisioningState != api.StateSucceeded {
		t.Fatalf("after the agent applied it: %s %s", e.ProvisioningState, e.StatusMessage)
	}
	// The same name again, in any case, is taken; so is it on the same
	// cluster from another workspace.
	_, err = sv.createEndpoint("My-Ep", doc{"compute": "azureml:k8s"})
	wantErr(t, "the same name in another case", err, http.StatusConflict, "exists in workspace ws")
	if _, err := attachToWS(t, sv.c, "ws2", "k8s", "c1"); err != nil {
		t.Fatal(err)
	}
	sv.sync()
	waitCompute(t, sv.c, "rg", "ws2", "k8s", api.StateSucceeded, "")
	err = sv.c.Do(ctx, "PUT", "/resourceGroups/rg/workspaces/ws2/onlineEndpoints/MY-EP", doc{"compute": "azureml:k8s"}, nil)
	wantErr(t, "the name on the same cluster from another workspace", err, http.StatusConflict, "endpoint name MY-EP is taken on cluster rg/c1 by online endpoint my-ep of workspace rg/ws", "unique on its cluster")

	var keys api.EndpointKeys
	if err := sv.c.Do(ctx, "POST", epPath+"my-ep/listKeys", nil, &keys); err != nil {
		t.Fatal(err)
	}
	if keys.PrimaryKey != de.PrimaryKey || keys.SecondaryKey != de.SecondaryKey {
		t.Fatal("listKeys differs from what the agent got")
	}
	// Keys are sealed at rest and never logged.
	db, err := os.ReadFile(filepath.Join(sv.dir, "workspace.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(sv.dir, "workspace.db-wal"))
	if bytes.Contains(append(db, wal...), []byte(keys.PrimaryKey)) {
		t.Fatal("the primary key is in the database in plain")
	}
	if strings.Contains(logs.String(), keys.PrimaryKey) {
		t.Fatal("the primary key is in the log")
	}
	// Regenerating the primary key changes it alone, and the agent gets
	// the new one at once.
	var regen api.EndpointKeys
	if err := sv.c.Do(ctx, "POST", epPath+"my-ep/regenerateKeys", api.RegenerateKeysRequest{KeyType: "Primary"}, &regen); err != nil {
		t.Fatal(err)
	}
	if regen.PrimaryKey == keys.PrimaryKey || regen.SecondaryKey != keys.SecondaryKey {
		t.Fatalf("regenerate primary: %v", regen)
	}
	d = sv.sync()
	if obj := desiredObject(d, api.KindOnlineEndpoint, "my-ep"); obj == nil || obj.OnlineEndpoint.PrimaryKey != regen.PrimaryKey {
		t.Fatalf("the agent did not get the new key: %+v", d)
	}
	err = sv.c.Do(ctx, "POST", epPath+"my-ep/regenerateKeys", api.RegenerateKeysRequest{KeyType: "tertiary"}, nil)
	wantErr(t, "a third key", err, http.StatusBadRequest, "primary or secondary")
	err = sv.c.Do(ctx, "POST", epPath+"my-ep/token", nil, nil)
	wantErr(t, "a token of a key endpoint", err, http.StatusBadRequest, "takes key auth")

	// Without a router reported, an applied endpoint is Failed with why.
	sv.facts.InferenceRouter = nil
	sv.report()
	if e := sv.endpoint("my-ep"); e.ProvisioningState != api.StateFailed || !strings.Contains(e.StatusMessage, "reports no inference router") {
		t.Fatalf("without a router: %s %q", e.ProvisioningState, e.StatusMessage)
	}
	sv.facts = routerFacts()
	sv.report()

	// Updates: description and tags; the compute stays.
	e, err = sv.patchEndpoint("my-ep", doc{"description": "new", "tags": doc{"a": "b"}})
	if err != nil || e.Description != "new" || e.Tags["a"] != "b" || e.Tags["n"] != "" || e.ProvisioningState != "Updating" {
		t.Fatalf("update: %+v %v", e, err)
	}
	_, err = sv.patchEndpoint("my-ep", doc{"compute": "azureml:other"})
	wantErr(t, "another compute", err, http.StatusBadRequest, "an endpoint stays on its compute")
	_, err = sv.patchEndpoint("my-ep", doc{"scoring_uri": "x"})
	wantErr(t, "a shown field", err, http.StatusBadRequest, "scoring_uri cannot be changed")
	sv.sync()
	if e := sv.endpoint("my-ep"); e.ProvisioningState != api.StateSucceeded {
		t.Fatalf("after the update was applied: %s", e.ProvisioningState)
	}
}

// attachToWS attaches a cluster to another workspace.
func attachToWS(t *testing.T, c *client.Client, ws, name, cluster string) (api.Compute, error) {
	t.Helper()
	var comp api.Compute
	err := c.Do(context.Background(), "PUT", "/resourceGroups/rg/workspaces/"+ws+"/computes/"+name,
		api.ComputeRequest{Type: "Kubernetes", ResourceID: "/resourceGroups/rg/connectedClusters/" + cluster, Namespace: "default"}, &comp)
	return comp, err
}

func TestAMLTokenEndpoint(t *testing.T) {
	sv := newServing(t)
	ctx := context.Background()
	if _, err := sv.createEndpoint("tok-ep", doc{"compute": "azureml:k8s", "auth_mode": "AML_Token"}); err != nil {
		t.Fatal(err)
	}
	d := sv.sync()
	de := desiredObject(d, api.KindOnlineEndpoint, "tok-ep").OnlineEndpoint
	if de.AuthMode != api.AuthModeAMLToken || de.TokenKey == "" || de.PrimaryKey != "" {
		t.Fatalf("desired aml_token endpoint: auth %s, token key set %v, keys set %v", de.AuthMode, de.TokenKey != "", de.PrimaryKey != "")
	}
	var tok api.EndpointToken
	if err := sv.c.Do(ctx, "POST", epPath+"tok-ep/token", nil, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || time.Until(tok.ExpiryTimeUTC) < 59*time.Minute || !tok.RefreshAfterTime.Before(tok.ExpiryTimeUTC) {
		t.Fatalf("token: %+v", tok)
	}
	// The router checks it with the token key it got, for this endpoint
	// only.
	if err := endpointauth.VerifyToken(de.TokenKey, "tok-ep", tok.AccessToken, time.Now()); err != nil {
		t.Fatalf("the router would refuse the token: %v", err)
	}
	if err := endpointauth.VerifyToken(de.TokenKey, "other", tok.AccessToken, time.Now()); err == nil {
		t.Fatal("the token is good for another endpoint")
	}
	err := sv.c.Do(ctx, "POST", epPath+"tok-ep/listKeys", nil, nil)
	wantErr(t, "keys of an aml_token endpoint", err, http.StatusBadRequest, "takes aml_token auth")
	err = sv.c.Do(ctx, "POST", epPath+"tok-ep/regenerateKeys", api.RegenerateKeysRequest{KeyType: "primary"}, nil)
	wantErr(t, "regenerating keys of an aml_token endpoint", err, http.StatusBadRequest, "only key endpoints have keys")
	// The router's address and certificate, for invoke.
	var router api.InferenceRouter
	if err := sv.c.Do(ctx, "GET", epPath+"tok-ep/router", nil, &router); err != nil || router.BaseURL != "https://127.0.0.1:30443" || router.CertificatePEM == "" {
		t.Fatalf("router: %+v %v", router, err)
	}
}

func TestEndpointTraffic(t *testing.T) {
	sv := newServing(t)
	upload(t, sv.c, map[string]string{"code/score.py": "def init(): pass\n", "model/m.pkl": "m"})
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"blue", "green"} {
		if _, err := sv.createDeployment("sk-ep", name, scoreDeployment()); err != nil {
			t.Fatal(err)
		}
	}
	if e := sv.endpoint("sk-ep"); fmt.Sprint(e.Traffic) != "map[blue:0 green:0]" {
		t.Fatalf("traffic of new deployments: %v", e.Traffic)
	}
	for _, tc := range []struct {
		name    string
		traffic doc
		wants   []string
	}{
		{"a bad sum", doc{"blue": 90, "green": 20}, []string{"the percents sum to 110: they must sum to 100 (or all be 0"}},
		{"an unknown deployment", doc{"blue": 50, "red": 50}, []string{"traffic.red: no deployment red in this endpoint; its deployments: blue, green"}},
		{"a percent over 100", doc{"blue": 101}, []string{"101%: a percent is from 0 to 100"}},
		{"a negative percent", doc{"blue": -10, "green": 110}, []string{"a percent is from 0 to 100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sv.patchEndpoint("sk-ep", doc{"traffic": tc.traffic})
			wantErr(t, tc.name, err, http.StatusBadRequest, tc.wants...)
		})
	}
	_, err := sv.patchEndpoint("sk-ep", doc{"mirror_traffic": doc{"green": 10}})
	wantErr(t, "mirror traffic", err, http.StatusBadRequest, "mirror traffic is not supported on Kubernetes online endpoints")

	e, err := sv.patchEndpoint("sk-ep", doc{"traffic": doc{"Blue": 90, "green": 10}})
	if err != nil || e.Traffic["blue"] != 90 || e.Traffic["green"] != 10 {
		t.Fatalf("traffic 90/10: %v %v", e.Traffic, err)
	}
	d := sv.sync()
	if de := desiredObject(d, api.KindOnlineEndpoint, "sk-ep"); de == nil || fmt.Sprint(de.OnlineEndpoint.Traffic) != "map[blue:90 green:10]" {
		t.Fatalf("the agent's traffic: %+v", de)
	}
	// A deployment that takes traffic cannot be deleted.
	err = sv.c.Do(context.Background(), "DELETE", epPath+"sk-ep/deployments/green", nil, nil)
	wantErr(t, "deleting a deployment with traffic", err, http.StatusConflict, "deployment green takes 10% of online endpoint sk-ep's traffic", "--traffic \"blue=100\"")
	// All 0 is no traffic.
	if e, err := sv.patchEndpoint("sk-ep", doc{"traffic": doc{"blue": 0, "green": 0}}); err != nil || fmt.Sprint(e.Traffic) != "map[blue:0 green:0]" {
		t.Fatalf("all 0: %v %v", e.Traffic, err)
	}
}

func TestEndpointDeleteWaitsForItsCluster(t *testing.T) {
	sv := newServing(t)
	ctx := context.Background()
	upload(t, sv.c, map[string]string{"code/score.py": "def init(): pass\n", "model/m.pkl": "m"})
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.createDeployment("sk-ep", "blue", scoreDeployment()); err != nil {
		t.Fatal(err)
	}
	sv.sync()
	var e api.OnlineEndpoint
	if err := sv.c.Do(ctx, "DELETE", epPath+"sk-ep", nil, &e); err != nil || e.ProvisioningState != api.StateDeleting {
		t.Fatalf("delete: %s %v", e.ProvisioningState, err)
	}
	if dep := sv.deployment("sk-ep", "blue"); dep.ProvisioningState != api.StateDeleting {
		t.Fatalf("its deployment: %s", dep.ProvisioningState)
	}
	_, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"})
	wantErr(t, "the name of an endpoint being deleted", err, http.StatusConflict, "already exists")
	_, err = sv.patchEndpoint("sk-ep", doc{"description": "x"})
	wantErr(t, "updating an endpoint being deleted", err, http.StatusConflict, "being deleted")
	// The agent gets both deletions; once it confirms, both are gone.
	d := syncSince(t, sv.agent, "rg", "c1", sv.rev)
	if !deletedRef(d, api.KindOnlineEndpoint, wsPath+"/onlineEndpoints/sk-ep") || !deletedRef(d, api.KindOnlineDeployment, wsPath+"/onlineEndpoints/sk-ep/deployments/blue") {
		t.Fatalf("deletions: %+v", d.Deleted)
	}
	if e := sv.endpoint("sk-ep"); e.ProvisioningState != api.StateDeleting {
		t.Fatalf("before the agent confirmed: %s", e.ProvisioningState)
	}
	sv.rev = d.Revision
	sv.report()
	waitGone(t, sv.c, epPath+"sk-ep")
	if _, err := sv.createEndpoint("sk-ep", doc{"compute": "azureml:k8s"}); err != nil {
		t.Fatalf("the name again, once free: %v", err)
	}
}
