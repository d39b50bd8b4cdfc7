package deploymentspec

import (
	"encoding/json"
	"strings"
	"testing"

	"outpost.dev/outpost/api"
)

func TestNames(t *testing.T) {
	for name, ok := range map[string]bool{"abc": true, "my-endpoint": true, "A1-b": true, strings.Repeat("a", 32): true,
		"ab": false, strings.Repeat("a", 33): false, "1abc": false, "abc-": false, "a_bc": false, "a.bc": false} {
		if err := CheckName("name", name); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", name, err, ok)
		}
	}
}

func TestAuthMode(t *testing.T) {
	for in, want := range map[string]string{"": "key", "Key": "key", "KEY": "key", "aml_token": "aml_token", "AMLToken": "aml_token"} {
		if got, err := AuthMode(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := AuthMode("aad_token"); err == nil || !strings.Contains(err.Error(), "Kubernetes online endpoints, which take key or aml_token") {
		t.Errorf("aad_token: %v", err)
	}
}

func TestValidateTraffic(t *testing.T) {
	deps := []string{"blue", "green"}
	got, err := ValidateTraffic(map[string]int{"BLUE": 90, "green": 10}, deps)
	if err != nil || TrafficString(got) != "blue=90 green=10" {
		t.Fatalf("90/10: %v %v", got, err)
	}
	if got, err := ValidateTraffic(map[string]int{"blue": 0, "green": 0}, deps); err != nil || len(got) != 0 {
		t.Fatalf("all 0: %v %v", got, err)
	}
	for _, tc := range []struct {
		in   map[string]int
		want string
	}{
		{map[string]int{"blue": 50}, "sum to 50"},
		{map[string]int{"blue": 50, "red": 50}, "no deployment red in this endpoint; its deployments: blue, green"},
		{map[string]int{"blue": 150, "green": -50}, "a percent is from 0 to 100"},
		{map[string]int{"blue": 50, "BLUE": 50}, "given twice"},
	} {
		if _, err := ValidateTraffic(tc.in, deps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestDeploymentDefaults(t *testing.T) {
	d, err := DecodeDeployment([]byte(`{"name": "blue", "instance_count": 3, "environment": {"image": "python:3.11"},
		"code_configuration": {"code": "azureml://datastores/workspaceblobstore/paths/c/", "scoring_script": "score.py"},
		"tags": {"n": 1}, "request_settings": {"request_timeout_ms": 3000}}`))
	if err != nil {
		t.Fatal(err)
	}
	DefaultDeployment(d)
	if err := ValidateDeployment(d); err != nil {
		t.Fatal(err)
	}
	if d.Type != "kubernetes" || d.ScaleSettings.Type != api.ScaleDefault || d.InstanceCount != 3 || d.Tags["n"] != "1" ||
		*d.RequestSettings != (api.RequestSettings{RequestTimeoutMS: 3000, MaxConcurrentRequestsPerInstance: 1, MaxQueueWaitMS: 500}) ||
		*d.ReadinessProbe != (api.ProbeSettings{Period: 10, InitialDelay: 10, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 30}) {
		t.Fatalf("defaults: %+v", d)
	}
	// target_utilization: instance_count is where the autoscaler starts.
	d, _ = DecodeDeployment([]byte(`{"name": "auto", "instance_count": 4, "scale_settings": {"type": "Target_Utilization", "min_instances": 2, "max_instances": 5}}`))
	DefaultDeployment(d)
	if s := d.ScaleSettings; s.Type != api.ScaleTargetUtilization || s.TargetUtilizationPercentage != 70 || s.PollingInterval != 1 || d.InstanceCount != 2 {
		t.Fatalf("autoscale: %+v %d", s, d.InstanceCount)
	}
}

func TestResources(t *testing.T) {
	it := api.InstanceTypeResources{Requests: map[string]string{"cpu": "1", "memory": "2Gi"}, Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}
	own := &api.InstanceTypeResources{Limits: map[string]string{"memory": "1Gi"}}
	eff := EffectiveResources(it, own)
	if eff.Requests["memory"] != "1Gi" || eff.Limits["memory"] != "1Gi" || eff.Requests["cpu"] != "1" || eff.Limits["cpu"] != "2" {
		t.Fatalf("effective: %+v", eff)
	}
	if errs := CheckResources("it", it, own); len(errs) != 0 {
		t.Fatalf("within: %v", errs)
	}
	errs := CheckResources("it", it, &api.InstanceTypeResources{Requests: map[string]string{"cpu": "3"}, Limits: map[string]string{"memory": "4Gi"}})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "resources.limits.memory: 4Gi is above the limit of instance type it (2Gi)") ||
		!strings.Contains(errs[1].Error(), "resources.requests.cpu: 3 is above the limit 2") {
		t.Fatalf("above: %v", errs)
	}
}

func TestInferenceConfig(t *testing.T) {
	ic, err := ParseInferenceConfig("environment.inference_config", json.RawMessage(`{"liveness_route": {"port": 8000, "path": "/live"},
		"readiness_route": {"port": 8000, "path": "/ready"}, "scoring_route": {"port": 8000, "path": "/score"}}`))
	if err != nil || ic.ScoringRoute != (api.Route{Port: 8000, Path: "/score"}) {
		t.Fatalf("%+v %v", ic, err)
	}
	_, err = ParseInferenceConfig("environment.inference_config", json.RawMessage(`{"liveness_route": {"port": "8000"}, "scoring": {}}`))
	if err == nil || !strings.Contains(err.Error(), `environment.inference_config.scoring: unknown field "scoring"`) ||
		!strings.Contains(err.Error(), "environment.inference_config.liveness_route.port: must be a whole number") {
		t.Fatalf("unknown field: %v", err)
	}
	_, err = ParseInferenceConfig("environment.inference_config", json.RawMessage(`{"liveness_route": {"port": 8000, "path": "live"}}`))
	if err == nil || !strings.Contains(err.Error(), `liveness_route.path: "live": an absolute path`) || !strings.Contains(err.Error(), "scoring_route: required") {
		t.Fatalf("routes: %v", err)
	}
}
