#!/usr/bin/env bash
# `make conformance`: upstream Kubernetes' own [Conformance] tests, in the areas
# the local node is meant to cover, against a fresh local cluster.
#
# Builds the upstream e2e test binary (go test -c k8s.io/kubernetes/test/e2e) once,
# with the patched module and generated go.mod of upstream/build.sh (which also
# builds agnhost, the program most of these tests run), cached with a stamp; starts
# a cluster of its own (own directory, ports and address ranges, so it never meets a
# development or test cluster); runs the subset serially with a JUnit report; prints
# passed / failed per area and in total with the failing tests (bench/conformance).
# Exits non-zero when a test failed.
#
# Output (kept after the run): .cache/conformance/{e2e.log,junit.xml,cluster/}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
kube=$root/.cache/kube
work=$root/.cache/conformance
outpost=$root/bin/outpost

# The areas of issue 11; the focus matches "[sig-x] <Area>..." of a [Conformance] test.
areas="ConfigMap,Secrets,Downward API volume,Projected,EmptyDir,Variable Expansion,Pods,Probing container,Container Lifecycle Hook,InitContainer,Kubelet,Job,Deployment,ReplicaSet,Services"
focus="\\[sig-[a-z-]+\\] (${areas//,/|})\\b.*\\[Conformance\\]"
skip='\[Serial\]|\[Disruptive\]|\[Slow\]'

# The control plane and agnhost (no-op when up to date), then the e2e binary against
# the same sources: its stamp is the control plane's.
upstream/build.sh "$kube"
stamp=$(cat "$kube/stamp")
if [ "$(cat "$kube/e2e.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$kube/bin/e2e.test" ]; then
  echo "building the upstream e2e test binary (several minutes the first time)"
  (cd upstream && go test -c -modfile "$kube/mod/go.mod" -trimpath -ldflags="-s -w" \
    -o "$kube/bin/e2e.test.tmp" k8s.io/kubernetes/test/e2e)
  mv "$kube/bin/e2e.test.tmp" "$kube/bin/e2e.test"
  echo "$stamp" > "$kube/e2e.stamp"
fi

# A fresh cluster: whatever a previous run left is stopped and deleted first.
mkdir -p "$work"
cluster=(--dir "$work/cluster")
if [ -d "$work/cluster" ]; then "$outpost" cluster down "${cluster[@]}" --purge; fi
down() { "$outpost" cluster down "${cluster[@]}"; }
trap down EXIT
# NodePorts: e2e checks them against the default range 30000-32767; this part of it
# stays clear of the test clusters' (31000 and up, internal/clustertest).
"$outpost" cluster up "${cluster[@]}" --kube-bin-dir "$kube/bin" --api-port 20900 \
  --pod-cidr 127.230.0.0/16 --service-cidr 127.231.0.0/16 --node-port-range 30000-30999
kubeconfig=$("$outpost" cluster kubeconfig "${cluster[@]}")

# Images are never pulled by the Outpost node (see README, "The local node"), and
# the skeleton provider has no cloud to ask: the tests only need the kubeconfig.
echo "running the [Conformance] tests of: $areas (about 25 minutes; log in $work/e2e.log)"
rm -f "$work/junit.xml"
set +e
"$kube/bin/e2e.test" --provider=skeleton --kubeconfig="$kubeconfig" \
  --ginkgo.focus="$focus" --ginkgo.skip="$skip" --ginkgo.no-color \
  --ginkgo.junit-report="$work/junit.xml" --ginkgo.timeout=2h \
  > "$work/e2e.log" 2>&1
e2e=$?
set -e
if [ ! -s "$work/junit.xml" ]; then
  tail -50 "$work/e2e.log"
  echo "the e2e binary exited $e2e without a JUnit report" >&2
  exit 1
fi
go run ./bench/conformance -areas "$areas" "$work/junit.xml"
