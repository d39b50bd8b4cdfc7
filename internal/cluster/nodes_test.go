package cluster

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitPodCIDR(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		n    int
		want []string
		err  string
	}{
		{"127.244.0.0/16", 1, []string{"127.244.0.0/16"}, ""},
		{"127.244.0.0/16", 2, []string{"127.244.0.0/20", "127.244.16.0/20"}, ""},
		{"127.244.0.0/16", 3, []string{"127.244.0.0/20", "127.244.16.0/20", "127.244.32.0/20"}, ""},
		{"127.244.0.0/16", 17, nil, ""},
		{"127.50.0.0/24", 2, []string{"127.50.0.0/28", "127.50.0.16/28"}, ""},
		{"127.50.0.0/24", 17, nil, "too small for 17 nodes"},
	} {
		got, err := splitPodCIDR(tc.cidr, tc.n)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("splitPodCIDR(%s, %d): %v, want an error with %q", tc.cidr, tc.n, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != tc.n || (tc.want != nil && !slices.Equal(got, tc.want)) {
			t.Errorf("splitPodCIDR(%s, %d) = %v, %v; want %v", tc.cidr, tc.n, got, err, tc.want)
		}
	}
	// Up to 16 nodes, adding one leaves the others' ranges as they were.
	a, _ := splitPodCIDR("127.244.0.0/16", 5)
	b, _ := splitPodCIDR("127.244.0.0/16", 16)
	if !slices.Equal(a, b[:5]) {
		t.Errorf("ranges of 5 nodes %v are not the first of 16 nodes' %v", a, b)
	}
	c, _ := splitPodCIDR("127.244.0.0/16", 17)
	if c[16] != "127.244.128.0/21" {
		t.Errorf("17 nodes: node 16 has %s, want 127.244.128.0/21", c[16])
	}
}

func TestNodes(t *testing.T) {
	c := &Config{Dir: "/x", APIPort: 7000, NodeName: "n", Nodes: 3, PodCIDR: "127.244.0.0/16",
		NodeLabels: map[string]map[string]string{"n-2": {"zone": "b"}}}
	specs, err := c.nodes()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		got = append(got, s.Name+" "+s.Component+" "+s.PodCIDR)
	}
	want := []string{"n node 127.244.0.0/20", "n-1 node-1 127.244.16.0/20", "n-2 node-2 127.244.32.0/20"}
	if !slices.Equal(got, want) {
		t.Errorf("nodes: %q, want %q", got, want)
	}
	if specs[0].Port != 7003 || specs[1].Port != 7006 || specs[2].Port != 7007 || c.lastPort() != 7007 {
		t.Errorf("ports %d %d %d (last %d), want 7003 7006 7007", specs[0].Port, specs[1].Port, specs[2].Port, c.lastPort())
	}
	if specs[0].CPU == "" || specs[0].Memory == "" || specs[2].Labels["zone"] != "b" {
		t.Errorf("node specs: %+v", specs)
	}
	if got := c.components(); !slices.Equal(got[len(got)-3:], []string{"node", "node-1", "node-2"}) {
		t.Errorf("components %v", got)
	}
	for name, want := range map[string]int{"node": 0, "node-2": 2, "node-0": -1, "node-02": -1, "nodes": -1, "etcd": -1} {
		if got := nodeIndex(name); got != want {
			t.Errorf("nodeIndex(%q) = %d, want %d", name, got, want)
		}
	}
	// One node is what it always was: the whole range, the machine's capacity.
	one := &Config{Dir: "/x", APIPort: 7000, NodeName: "n", PodCIDR: "127.244.0.0/16"}
	specs, _ = one.nodes()
	if len(specs) != 1 || specs[0].PodCIDR != one.PodCIDR || specs[0].CPU != "" || specs[0].Memory != "" || specs[0].Port != 7003 {
		t.Errorf("single node: %+v", specs)
	}
	if cfg := one.nodeConfig(specs[0], 1); cfg.GPUs != nil || cfg.NoClusterServices || cfg.Dir != "/x/node" || cfg.Kubeconfig != "/x/kubeconfigs/node.kubeconfig" {
		t.Errorf("single node's config: %+v", cfg)
	}
}

func TestParseNodeLabels(t *testing.T) {
	names := []string{"n", "n-1"}
	got, err := ParseNodeLabels([]string{"0:a=1,b=", "n-1:example.com/tier=gold", "1:a=2"}, names)
	if err != nil {
		t.Fatal(err)
	}
	if got["n"]["a"] != "1" || got["n"]["b"] != "" || got["n-1"]["example.com/tier"] != "gold" || got["n-1"]["a"] != "2" {
		t.Errorf("labels %v", got)
	}
	for spec, want := range map[string]string{
		"a=b":                            "must be NODE:KEY=VALUE",
		"0:":                             "must be NODE:KEY=VALUE",
		"2:a=b":                          "there is no node 2",
		"other:a=b":                      `there is no node "other"`,
		"0:a":                            `"a" is not KEY=VALUE`,
		"0:a b=c":                        `key "a b"`,
		"0:a=" + strings.Repeat("x", 64): "must be no more than 63 characters",
		"0:outpost.dev/node=x":           "the node sets outpost.dev/node itself",
	} {
		if _, err := ParseNodeLabels([]string{spec}, names); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--node-label %s: %v, want an error with %q", spec, err, want)
		}
	}
}
