package workspace

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api"
)

// Updates of different keys do not conflict: each one's keys must be merged
// into what the others stored, and none may fail with "changed meanwhile".
func TestConcurrentUpdatesOfDifferentKeysAllSucceed(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	// Concurrent calls open connections that may end up unused; closed
	// first, they do not hold up the workspace's shutdown.
	defer c.CloseIdleConnections()
	ctx := context.Background()
	register(t, c, "rg", "c1")
	path := "/resourceGroups/rg/connectedClusters/c1/extensions/ml"
	if err := c.Do(ctx, "PUT", path, req(map[string]string{"enableTraining": "True"}, nil), nil); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			patch := api.ExtensionRequest{ConfigurationSettings: map[string]string{fmt.Sprintf("nodeSelector.k%d", i): fmt.Sprintf("v%d", i)}}
			errs[i] = c.Do(ctx, "PATCH", path, patch, nil)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	var e api.Extension
	if err := c.Do(ctx, "GET", path, nil, &e); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if k, want := fmt.Sprintf("nodeSelector.k%d", i), fmt.Sprintf("v%d", i); e.ConfigurationSettings[k] != want {
			t.Errorf("%s = %q after the updates, want %q", k, e.ConfigurationSettings[k], want)
		}
	}
	if e.ConfigurationSettings["enableTraining"] != "True" {
		t.Errorf("enableTraining = %q after the updates, want the created True kept", e.ConfigurationSettings["enableTraining"])
	}
	if e.Generation != 1+n {
		t.Errorf("generation %d after %d updates of a new extension, want %d", e.Generation, n, 1+n)
	}
}

// The settings that Outpost accepts but does not act on are reported when
// they are set, by create and by update alike.
func TestUnsupportedInstallSettingsWarn(t *testing.T) {
	c, stop := start(t, t.TempDir(), time.Second)
	defer stop()
	ctx := context.Background()
	register(t, c, "rg", "c1")
	path := "/resourceGroups/rg/connectedClusters/c1/extensions/ml"
	var e api.Extension
	if err := c.Do(ctx, "PUT", path, req(map[string]string{"enableTraining": "True", "installVolcano": "True"}, nil), &e); err != nil {
		t.Fatal(err)
	}
	if !hasWarning(e.Warnings, "installVolcano=True") {
		t.Errorf("create with installVolcano=True: warnings %q, want one about installVolcano", e.Warnings)
	}
	patch := api.ExtensionRequest{ConfigurationSettings: map[string]string{"installPromOp": "True", "installDcgmExporter": "True"}}
	if err := c.Do(ctx, "PATCH", path, patch, &e); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"installVolcano=True", "installPromOp=True", "installDcgmExporter=True"} {
		if !hasWarning(e.Warnings, k) {
			t.Errorf("update: warnings %q, want one about %s", e.Warnings, k)
		}
	}
}

func hasWarning(ws []string, prefix string) bool {
	for _, w := range ws {
		if strings.HasPrefix(w, prefix) {
			return true
		}
	}
	return false
}
