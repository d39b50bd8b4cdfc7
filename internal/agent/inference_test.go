package agent

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
	infv1 "outpost.dev/outpost/api/inference/v1alpha1"
	trainingv1 "outpost.dev/outpost/api/training/v1alpha1"
	"outpost.dev/outpost/internal/inference"
)

func endpointObject(name string, gen int64, traffic map[string]int) api.DesiredObject {
	return api.DesiredObject{Kind: api.KindOnlineEndpoint, ID: "/resourceGroups/rg/workspaces/ws/onlineEndpoints/" + name, Generation: gen,
		OnlineEndpoint: &api.DesiredOnlineEndpoint{Name: name, ResourceGroup: "rg", Workspace: "ws", Compute: "k8s", Namespace: "inf-test",
			AuthMode: api.AuthModeKey, PrimaryKey: "primary-" + name, SecondaryKey: "secondary-" + name, TokenKey: "token-key-" + name,
			Traffic: traffic}}
}

func deploymentObject(endpoint, name string, gen int64) api.DesiredObject {
	return api.DesiredObject{Kind: api.KindOnlineDeployment, Generation: gen,
		ID: "/resourceGroups/rg/workspaces/ws/onlineEndpoints/" + endpoint + "/deployments/" + name,
		OnlineDeployment: &api.DesiredOnlineDeployment{Name: name, Endpoint: endpoint, ResourceGroup: "rg", Workspace: "ws", Compute: "k8s",
			Namespace: "inf-test", Token: "credential-of-" + name, Image: "mcr.microsoft.com/azureml/minimal:latest", InstanceType: "defaultinstancetype",
			Resources:     &api.InstanceTypeResources{Limits: map[string]string{"cpu": "1", "memory": "1Gi"}},
			InstanceCount: 1,
			ScaleSettings: api.ScaleSettings{Type: api.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 3, PollingInterval: 1,
				TargetUtilizationPercentage: 70},
			RequestSettings: api.RequestSettings{RequestTimeoutMS: 5000, MaxConcurrentRequestsPerInstance: 2, MaxQueueWaitMS: 500},
			LivenessProbe:   api.ProbeSettings{Period: 10, InitialDelay: 10, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 30},
			ReadinessProbe:  api.ProbeSettings{Period: 5, InitialDelay: 3, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 4},
			ModelName:       "sklearn", ModelVersion: "2", EnvironmentVariables: map[string]string{"A": "1"}, RunDigest: "run-1",
		}}
}

func TestBuildOnlineEndpoint(t *testing.T) {
	o := endpointObject("My-Endpoint", 1, map[string]int{"blue": 90, "green": 10})
	oe := buildOnlineEndpoint(o.ID, o.OnlineEndpoint)
	cr := inference.DNSLabel("My-Endpoint")
	if oe.Name != cr || oe.Namespace != "inf-test" || oe.Kind != "OnlineEndpoint" || oe.APIVersion != "inference.outpost.dev/v1alpha1" {
		t.Errorf("object %s/%s %s %s", oe.Namespace, oe.Name, oe.APIVersion, oe.Kind)
	}
	want := infv1.OnlineEndpointSpec{EndpointID: o.ID, Name: "My-Endpoint", AuthMode: "key", SecretName: cr + "-keys",
		Traffic: map[string]int32{"blue": 90, "green": 10}}
	if !reflect.DeepEqual(oe.Spec, want) {
		t.Errorf("spec %+v, want %+v", oe.Spec, want)
	}
	if oe.Labels[infv1.LabelEndpoint] != "My-Endpoint" || oe.Labels["app.kubernetes.io/managed-by"] != "outpost-agent" {
		t.Errorf("labels %v", oe.Labels)
	}
	data := endpointSecretData(o.OnlineEndpoint)
	if string(data["primaryKey"]) != "primary-My-Endpoint" || string(data["secondaryKey"]) != "secondary-My-Endpoint" ||
		string(data["tokenKey"]) != "token-key-My-Endpoint" || len(data) != 3 {
		t.Errorf("keys Secret keys %v", slices.Sorted(maps.Keys(data)))
	}
}

func TestBuildOnlineDeployment(t *testing.T) {
	o := deploymentObject("my-ep", "blue", 1)
	d := o.OnlineDeployment
	d.InferenceConfig = &api.InferenceConfig{LivenessRoute: api.Route{Port: 8080, Path: "/live"}, ReadinessRoute: api.Route{Port: 8080, Path: "/ready"},
		ScoringRoute: api.Route{Port: 8080, Path: "/score"}}
	od := buildOnlineDeployment(o.ID, d)
	if od.Name != "my-ep-blue" || od.Name != inference.DeploymentName("my-ep", "blue") {
		t.Errorf("name %s: want the name of the Deployment that runs it", od.Name)
	}
	want := infv1.OnlineDeploymentSpec{
		DeploymentID: o.ID, Name: "blue", Endpoint: "my-ep", Image: d.Image, InstanceType: "defaultinstancetype",
		Resources: &infv1.Resources{Limits: map[string]string{"cpu": "1", "memory": "1Gi"}},
		Scale:     infv1.Scale{Type: "target_utilization", InstanceCount: 1, MinInstances: 1, MaxInstances: 3, PollingIntervalSeconds: 1, TargetUtilizationPercent: 70},
		Request:   infv1.Request{TimeoutMS: 5000, MaxConcurrentPerInstance: 2, MaxQueueWaitMS: 500},
		Liveness:  infv1.Probe{PeriodSeconds: 10, InitialDelaySeconds: 10, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 30},
		Readiness: infv1.Probe{PeriodSeconds: 5, InitialDelaySeconds: 3, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 4},
		InferenceConfig: &infv1.InferenceConfig{Liveness: infv1.Route{Port: 8080, Path: "/live"}, Readiness: infv1.Route{Port: 8080, Path: "/ready"},
			Scoring: infv1.Route{Port: 8080, Path: "/score"}},
		SecretName: "my-ep-blue-credentials", ModelName: "sklearn", ModelVersion: "2", EnvironmentVariables: map[string]string{"A": "1"},
		RunDigest: "run-1",
	}
	if !reflect.DeepEqual(od.Spec, want) {
		t.Errorf("spec %+v\nwant %+v", od.Spec, want)
	}
	if od.Labels[infv1.LabelEndpoint] != "my-ep" || od.Labels[infv1.LabelDeployment] != "blue" {
		t.Errorf("labels %v", od.Labels)
	}

	cfg := Config{WorkspaceURL: "https://ws.example:8443/", CAPEM: []byte("CA PEM"), Proxy: "http://proxy:3128", NoProxy: "10.0.0.0/8"}
	data := deploymentSecretData(cfg, d)
	if got := string(data[infv1.EnvDeploymentURL]); got != "https://ws.example:8443/deployrun/v1/resourceGroups/rg/workspaces/ws/onlineEndpoints/my-ep/deployments/blue" {
		t.Errorf("URL %s", got)
	}
	if string(data[infv1.EnvDeploymentToken]) != "credential-of-blue" || string(data[infv1.EnvDeploymentCA]) != "CA PEM" ||
		string(data[trainingv1.EnvProxy]) != "http://proxy:3128" || string(data[trainingv1.EnvNoProxy]) != "10.0.0.0/8" || len(data) != 5 {
		t.Errorf("credentials keys %v", slices.Sorted(maps.Keys(data)))
	}
	// The router reads the Secrets labelled with an endpoint: the
	// deployment's credential is not among them.
	if _, ok := credentialsLabels(od.Name)[infv1.LabelEndpoint]; ok {
		t.Error("the credentials Secret is labelled with its endpoint: the router would read it")
	}
}

func TestCheckInference(t *testing.T) {
	bad := func(f func(*api.DesiredOnlineDeployment)) error {
		o := deploymentObject("ep", "blue", 1)
		f(o.OnlineDeployment)
		return checkDeployment(o.OnlineDeployment)
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"endpoint name with a space", checkEndpoint(endpointObject("my endpoint", 1, nil).OnlineEndpoint), `endpoint name "my endpoint"`},
		{"unknown auth mode", func() error {
			o := endpointObject("ep", 1, nil)
			o.OnlineEndpoint.AuthMode = "aad_token"
			return checkEndpoint(o.OnlineEndpoint)
		}(), `auth mode "aad_token"`},
		{"traffic above 100", checkEndpoint(endpointObject("ep", 1, map[string]int{"blue": 101}).OnlineEndpoint), "traffic blue=101"},
		{"no credential", bad(func(d *api.DesiredOnlineDeployment) { d.Token = "" }), "no credential"},
		{"no image", bad(func(d *api.DesiredOnlineDeployment) { d.Image = "" }), "no image"},
		{"deployment name too long", bad(func(d *api.DesiredOnlineDeployment) { d.Name = strings.Repeat("x", 64) }), "deployment name"},
		{"negative count", bad(func(d *api.DesiredOnlineDeployment) { d.InstanceCount = -1 }), "instance_count -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
				t.Errorf("err %v, want one saying %q", c.err, c.want)
			}
		})
	}
	if err := checkDeployment(deploymentObject("ep", "blue", 1).OnlineDeployment); err != nil {
		t.Errorf("a good deployment: %v", err)
	}
	if err := checkEndpoint(endpointObject("ep", 1, map[string]int{"blue": 100}).OnlineEndpoint); err != nil {
		t.Errorf("a good endpoint: %v", err)
	}
	if err := checkEndpoint(nil); err == nil || errors.Is(err, errNoInference) {
		t.Errorf("nil endpoint: %v", err)
	}
}

func TestChangedDeployments(t *testing.T) {
	a := api.DeploymentReport{ID: "a", Phase: "Creating", Instances: 1}
	b := api.DeploymentReport{ID: "b", Phase: "Succeeded", Instances: 2, ReadyInstances: 2}
	bMore := b
	bMore.ReadyInstances = 1
	c := api.DeploymentReport{ID: "c", Phase: "Failed", Reason: "InitFailed", Message: "Traceback"}
	got := changedDeployments([]api.DeploymentReport{a, b}, []api.DeploymentReport{a, bMore, c})
	if !reflect.DeepEqual(got, []api.DeploymentReport{bMore, c}) {
		t.Errorf("changed %+v, want b (ready count) and c (new)", got)
	}
}

func TestBaseURL(t *testing.T) {
	for _, c := range []struct {
		scheme, host string
		port         int32
		want         string
	}{
		{"https", "10.0.0.5", 443, "https://10.0.0.5"},
		{"http", "10.0.0.5", 80, "http://10.0.0.5"},
		{"https", "127.0.0.1", 31443, "https://127.0.0.1:31443"},
		{"http", "fd00::5", 80, "http://[fd00::5]"},
		{"http", "fd00::5", 30080, "http://[fd00::5]:30080"},
		{"https", "scoring.example.com", 443, "https://scoring.example.com"},
	} {
		if got := baseURL(c.scheme, c.host, c.port); got != c.want {
			t.Errorf("baseURL(%s, %s, %d) = %s, want %s", c.scheme, c.host, c.port, got, c.want)
		}
	}
}
