package framework

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"outpost.dev/outpost/api/training/v1alpha1"
)

func envMap(vars []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

func world(t *testing.T, typ string, d *v1alpha1.Distribution, instances int) (Plugin, World) {
	t.Helper()
	p, err := For(typ)
	if err != nil {
		t.Fatal(err)
	}
	hosts := make([]string, instances)
	for i := range hosts {
		hosts[i] = "job-" + string(rune('0'+i)) + ".job"
	}
	w, err := NewWorld(p, d, instances, hosts)
	if err != nil {
		t.Fatalf("NewWorld: %v", err)
	}
	return p, w
}

func TestFor(t *testing.T) {
	for _, typ := range []string{"", "pytorch", "PyTorch", "tensorflow", "mpi"} {
		p, err := For(typ)
		if err != nil {
			t.Fatalf("For(%q): %v", typ, err)
		}
		if p.Name() != strings.ToLower(typ) {
			t.Errorf("For(%q).Name() = %q", typ, p.Name())
		}
	}
	_, err := For("horovod")
	if err == nil || !strings.Contains(err.Error(), `"horovod"`) || !strings.Contains(err.Error(), "mpi, pytorch, tensorflow") {
		t.Errorf("For(horovod) error = %v, want one naming it and the known types", err)
	}
	if got := Names(); !slices.Equal(got, []string{"mpi", "pytorch", "tensorflow"}) {
		t.Errorf("Names = %q", got)
	}
}

func TestPlain(t *testing.T) {
	p, w := world(t, "", nil, 1)
	if p.PodEnv(w, 0) != nil || p.ProcessEnv(w, 0, 0) != nil || p.Ports(w) != nil {
		t.Error("the plain command plugin sets something")
	}
}

func TestPyTorch(t *testing.T) {
	for _, c := range []struct {
		name      string
		d         *v1alpha1.Distribution
		instances int
		pod       map[string]string // instance 1's when there are 2
		procs     []map[string]string
	}{
		{
			name: "world of one", d: &v1alpha1.Distribution{Type: "pytorch"}, instances: 1,
			pod: map[string]string{"MASTER_ADDR": "job-0.job", "MASTER_PORT": "6105", "WORLD_SIZE": "1", "NODE_RANK": "0", "AZUREML_CR_NODE_RANK": "0"},
			procs: []map[string]string{
				{"RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"},
			},
		},
		{
			name: "2 instances x 2 processes", d: &v1alpha1.Distribution{Type: "pytorch", ProcessCountPerInstance: 2}, instances: 2,
			pod: map[string]string{"MASTER_ADDR": "job-0.job", "MASTER_PORT": "6105", "WORLD_SIZE": "4", "NODE_RANK": "1", "AZUREML_CR_NODE_RANK": "1"},
			procs: []map[string]string{
				{"RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"},
				{"RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, w := world(t, "pytorch", c.d, c.instances)
			last := c.instances - 1
			if got := envMap(p.PodEnv(w, last)); !reflect.DeepEqual(got, c.pod) {
				t.Errorf("PodEnv = %v, want %v", got, c.pod)
			}
			for l, want := range c.procs {
				if got := p.ProcessEnv(w, last, l); !reflect.DeepEqual(got, want) {
					t.Errorf("ProcessEnv(%d, %d) = %v, want %v", last, l, got, want)
				}
			}
			if got := p.Ports(w); len(got) != 1 || got[0].ContainerPort != 6105 {
				t.Errorf("Ports = %+v", got)
			}
		})
	}
}

func TestTensorFlow(t *testing.T) {
	decode := func(t *testing.T, env map[string]string) tfConfig {
		t.Helper()
		var c tfConfig
		if err := json.Unmarshal([]byte(env["TF_CONFIG"]), &c); err != nil {
			t.Fatalf("TF_CONFIG %q: %v", env["TF_CONFIG"], err)
		}
		return c
	}
	t.Run("world of one", func(t *testing.T) {
		p, w := world(t, "tensorflow", &v1alpha1.Distribution{Type: "tensorflow", WorkerCount: 1}, 1)
		got := p.ProcessEnv(w, 0, 0)["TF_CONFIG"]
		want := `{"cluster":{"worker":["job-0.job:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}`
		if got != want {
			t.Errorf("TF_CONFIG = %s\nwant %s", got, want)
		}
		if env := envMap(p.PodEnv(w, 0)); !reflect.DeepEqual(env, map[string]string{"AZUREML_CR_NODE_RANK": "0"}) {
			t.Errorf("PodEnv = %v", env)
		}
	})
	t.Run("2 instances x 2 processes, one a parameter server", func(t *testing.T) {
		d := &v1alpha1.Distribution{Type: "tensorflow", ProcessCountPerInstance: 2, WorkerCount: 3, ParameterServerCount: 1}
		p, w := world(t, "tensorflow", d, 2)
		wantCluster := map[string][]string{
			"worker": {"job-0.job:2222", "job-0.job:2223", "job-1.job:2222"},
			"ps":     {"job-1.job:2223"},
		}
		for _, c := range []struct {
			instance, local int
			task            tfTask
		}{
			{0, 0, tfTask{"worker", 0}}, {0, 1, tfTask{"worker", 1}},
			{1, 0, tfTask{"worker", 2}}, {1, 1, tfTask{"ps", 0}},
		} {
			cfg := decode(t, p.ProcessEnv(w, c.instance, c.local))
			if !reflect.DeepEqual(cfg.Cluster, wantCluster) || cfg.Task != c.task || cfg.Environment != "cloud" {
				t.Errorf("instance %d process %d: TF_CONFIG = %+v, want cluster %v task %+v", c.instance, c.local, cfg, wantCluster, c.task)
			}
		}
		if ports := p.Ports(w); len(ports) != 2 || ports[0].ContainerPort != 2222 || ports[1].ContainerPort != 2223 || ports[0].Name == ports[1].Name {
			t.Errorf("Ports = %+v", ports)
		}
	})
	t.Run("no parameter servers: no ps key", func(t *testing.T) {
		p, w := world(t, "tensorflow", &v1alpha1.Distribution{Type: "tensorflow"}, 2)
		if s := p.ProcessEnv(w, 1, 0)["TF_CONFIG"]; strings.Contains(s, `"ps"`) || !strings.Contains(s, `"index":1`) {
			t.Errorf("TF_CONFIG = %s", s)
		}
	})
}

func TestMPI(t *testing.T) {
	t.Run("world of one", func(t *testing.T) {
		p, w := world(t, "mpi", &v1alpha1.Distribution{Type: "mpi"}, 1)
		want := map[string]string{"AZ_BATCH_MASTER_NODE": "job-0.job:6105", "AZ_BATCHAI_MPI_MASTER_NODE": "job-0.job", "AZUREML_CR_NODE_RANK": "0"}
		if got := envMap(p.PodEnv(w, 0)); !reflect.DeepEqual(got, want) {
			t.Errorf("PodEnv = %v, want %v", got, want)
		}
		wantProc := map[string]string{"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}
		if got := p.ProcessEnv(w, 0, 0); !reflect.DeepEqual(got, wantProc) {
			t.Errorf("ProcessEnv = %v, want %v", got, wantProc)
		}
	})
	t.Run("2 instances x 2 processes", func(t *testing.T) {
		p, w := world(t, "mpi", &v1alpha1.Distribution{Type: "mpi", ProcessCountPerInstance: 2}, 2)
		want := map[string]string{"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
		if got := p.ProcessEnv(w, 1, 1); !reflect.DeepEqual(got, want) {
			t.Errorf("ProcessEnv(1, 1) = %v, want %v", got, want)
		}
		if got := envMap(p.PodEnv(w, 1)); got["AZ_BATCHAI_MPI_MASTER_NODE"] != "job-0.job" || got["AZUREML_CR_NODE_RANK"] != "1" {
			t.Errorf("PodEnv(1) = %v", got)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		typ       string
		d         v1alpha1.Distribution
		instances int
		want      string // "" for valid
	}{
		{"pytorch", v1alpha1.Distribution{ProcessCountPerInstance: 4}, 2, ""},
		{"pytorch", v1alpha1.Distribution{ProcessCountPerInstance: -1}, 1, "process_count_per_instance -1 is negative"},
		{"pytorch", v1alpha1.Distribution{WorkerCount: 2}, 1, "worker_count and parameter_server_count are tensorflow settings"},
		{"mpi", v1alpha1.Distribution{ParameterServerCount: 1}, 1, "tensorflow settings"},
		{"tensorflow", v1alpha1.Distribution{WorkerCount: 2}, 2, ""},
		{"tensorflow", v1alpha1.Distribution{}, 3, ""},
		{"tensorflow", v1alpha1.Distribution{WorkerCount: 2, ParameterServerCount: 1}, 2, "must equal the 2 processes"},
		{"tensorflow", v1alpha1.Distribution{ParameterServerCount: 1}, 1, "leaves no worker"},
		{"tensorflow", v1alpha1.Distribution{WorkerCount: -1}, 1, "must not be negative"},
	} {
		p, err := For(c.typ)
		if err != nil {
			t.Fatal(err)
		}
		c.d.Type = c.typ
		err = p.Validate(&c.d, c.instances)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %+v x%d: %v", c.typ, c.d, c.instances, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %+v x%d: error %v, want one containing %q", c.typ, c.d, c.instances, err, c.want)
		}
	}
}

func TestWorldFromEnv(t *testing.T) {
	p, w := world(t, "tensorflow", &v1alpha1.Distribution{Type: "tensorflow", ProcessCountPerInstance: 2, ParameterServerCount: 1}, 2)
	vars := envMap(Env(p.Name(), w, 1))
	gp, gw, instance, err := WorldFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if gp.Name() != "tensorflow" || !reflect.DeepEqual(gw, w) || instance != 1 {
		t.Errorf("WorldFromEnv = %s %+v %d, want tensorflow %+v 1", gp.Name(), gw, instance, w)
	}

	for _, c := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"unknown framework", map[string]string{EnvFramework: "jax"}, `unknown distribution type "jax"`},
		{"bad count", map[string]string{EnvInstanceCount: "two"}, `OUTPOST_INSTANCE_COUNT="two"`},
		{"index out of range", map[string]string{EnvInstanceIndex: "2"}, "is not below"},
		{"hosts short", map[string]string{EnvHosts: "a"}, "names 1 hosts for 2 instances"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := WorldFromEnv(func(k string) string {
				if v, ok := c.set[k]; ok {
					return v
				}
				return vars[k]
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestNewWorldErrors(t *testing.T) {
	p, _ := For("pytorch")
	if _, err := NewWorld(p, nil, 0, nil); err == nil {
		t.Error("a world of 0 instances was made")
	}
	if _, err := NewWorld(p, nil, 2, []string{"a"}); err == nil {
		t.Error("a world with too few hosts was made")
	}
}
