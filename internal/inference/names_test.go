package inference

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestDeploymentName(t *testing.T) {
	long := strings.Repeat("e", 40)
	for _, c := range []struct{ endpoint, deployment, want string }{
		{"my-endpoint", "blue", "my-endpoint-blue"},
		{"MyEndpoint", "blue", "myendpoint-blue-"},
		{"ep", "a_b", "ep-a-b-"},
		{long, strings.Repeat("d", 30), strings.Repeat("e", 40) + "-" + strings.Repeat("d", 15) + "-"},
	} {
		got := DeploymentName(c.endpoint, c.deployment)
		if !strings.HasPrefix(got, c.want) || (strings.HasSuffix(c.want, "-") && len(got) != len(c.want)+6) {
			t.Errorf("DeploymentName(%q, %q) = %q, want %q followed by 6 hex digits when cut", c.endpoint, c.deployment, got, c.want)
		}
		if msgs := validation.IsDNS1123Label(got); len(msgs) > 0 {
			t.Errorf("DeploymentName(%q, %q) = %q: %v", c.endpoint, c.deployment, got, msgs)
		}
	}
	// Names that differ only where the DNS form cannot show it stay apart.
	if a, b := DeploymentName("ep", "a_b"), DeploymentName("ep", "a-b"); a == b {
		t.Errorf("a_b and a-b both give %q", a)
	}
	if a, b := DeploymentName("EP", "x"), DeploymentName("ep", "x"); a == b {
		t.Errorf("EP and ep both give %q", a)
	}
}
