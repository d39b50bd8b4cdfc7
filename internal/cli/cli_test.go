package cli

import (
	"strings"
	"testing"
)

// The seed writes several settings after one flag, as the az CLI takes them.
func TestRewriteMultiValue(t *testing.T) {
	cases := []struct{ in, want string }{
		{"k8s-extension create --config enableTraining=True enableInference=True --cluster-name c",
			"k8s-extension create --config enableTraining=True --config enableInference=True --cluster-name c"},
		{"k8s-extension create --config-protected sslCertPemFile=a sslKeyPemFile=b --resource-group rg",
			"k8s-extension create --config-protected sslCertPemFile=a --config-protected sslKeyPemFile=b --resource-group rg"},
		{"k8s-extension create --configuration-settings a=1 b=2",
			"k8s-extension create --configuration-settings a=1 --configuration-settings b=2"},
		{"ml compute attach --user-assigned-identities id1 id2 --no-wait",
			"ml compute attach --user-assigned-identities id1 --user-assigned-identities id2 --no-wait"},
		{"k8s-extension create --config=a=1 --name n", "k8s-extension create --config=a=1 --name n"},
		{"cluster up --dir /tmp/x", "cluster up --dir /tmp/x"},
	}
	for _, tc := range cases {
		if got := strings.Join(rewriteMultiValue(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%q\n got  %q\n want %q", tc.in, got, tc.want)
		}
	}
}

func TestPairs(t *testing.T) {
	m, err := pairs("--config", []string{"a=1", "b=x=y", "c="})
	if err != nil || m["a"] != "1" || m["b"] != "x=y" || m["c"] != "" {
		t.Fatalf("pairs: %v %v", m, err)
	}
	for _, bad := range []string{"novalue", "=1"} {
		if _, err := pairs("--config", []string{bad}); err == nil || !strings.Contains(err.Error(), "want key=value") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}
