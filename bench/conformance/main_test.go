package main

import (
	"strings"
	"testing"
)

const sample = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5">
  <testsuite name="Kubernetes e2e suite" tests="5">
    <testcase name="[BeforeSuite]" status="passed"></testcase>
    <testcase name="[It] [sig-storage] ConfigMap should be consumable from pods in volume [NodeConformance] [Conformance] [sig-storage, NodeConformance, Conformance]" status="passed"></testcase>
    <testcase name="[It] [sig-storage] ConfigMap updates should be reflected in volume [NodeConformance] [Conformance] [sig-storage, NodeConformance, Conformance]" status="failed">
      <failure message="timed out waiting for the condition&#xA;more" type="failed">details</failure>
    </testcase>
    <testcase name="[It] [sig-node] Pods Extended Pods Set QOS Class [Conformance]" status="timedout"></testcase>
    <testcase name="[It] [sig-apps] Job should run a job to completion [Conformance]" status="skipped"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>`

func TestSummary(t *testing.T) {
	areas := []string{"ConfigMap", "Pods", "Job"}
	results, err := summarise(strings.NewReader(sample), areas)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if failed := printSummary(&out, results, areas); failed != 2 {
		t.Errorf("%d failed, want 2", failed)
	}
	for _, want := range []string{
		"ConfigMap       1       1",
		"Pods       0       1",
		"total       1       2",
		"1 of 3 passed",
		"- [sig-storage] ConfigMap updates should be reflected in volume [NodeConformance] [Conformance]\n    timed out waiting for the condition\n",
		"- [sig-node] Pods Extended Pods Set QOS Class [Conformance]\n    timedout\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Job") {
		t.Errorf("a skipped test is counted:\n%s", out.String())
	}
}
