#!/usr/bin/env bash
# Builds the local cluster's control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd) from the upstream Go modules pinned in this folder's go.mod,
# once: a second run with the same inputs only checks the stamp.
#
# It also builds agnhost, the upstream test program behind the node's agnhost image
# shim (internal/container) and most upstream e2e tests.
#
# Two deliberate changes to upstream, both because every pod of the Outpost node has
# its own 127.x address (see README, "The local cluster"): the validation of Endpoints
# and EndpointSlice addresses accepts loopback addresses, and the apiserver proxies
# (pods/proxy, and so services/proxy) to loopback pod addresses. The module is copied
# from the module cache into the git-ignored build folder, patched there, and
# swapped in with a `replace` in a generated go.mod (-modfile): nothing of
# upstream is committed to this repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../.cache/kube}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"

version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
stamp=$(cat go.mod go.sum build.sh tools.go cmd/etcd/main.go | sha256sum | cut -c1-16)
bins="kube-apiserver kube-controller-manager kube-scheduler etcd agnhost"
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  ok=1
  for b in $bins; do [ -x "$out/bin/$b" ] || ok=0; done
  if [ $ok = 1 ]; then echo "upstream $version binaries are up to date in $out/bin"; exit 0; fi
fi

echo "building upstream Kubernetes $version (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, agnhost); a cold build takes several minutes"
go mod download k8s.io/kubernetes
src=$out/src/kubernetes
rm -rf "$out/src"
mkdir -p "$out/src"
cp -r "$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)" "$src"
chmod -R u+w "$src"
file=$src/pkg/apis/core/validation/validation.go
# Drop exactly the loopback check of ValidateEndpointIP; fail loudly if upstream moved it.
awk '
  /^func ValidateEndpointIP\(/ { inside=1 }
  inside && /^\tif ip.IsLoopback\(\) \{$/ { skip=3; done++ }
  skip > 0 { skip--; next }
  inside && /^}$/ { inside=0 }
  { print }
  END { if (done != 1) { print "loopback check not found in ValidateEndpointIP" > "/dev/stderr"; exit 1 } }
' "$file" > "$file.patched"
mv "$file.patched" "$file"
file=$src/pkg/registry/core/pod/strategy.go
# Let pod ResourceLocation (pods/proxy; services/proxy picks a pod address the same way
# through Endpoints) accept a loopback pod IP: only the IsGlobalUnicast refusal is widened,
# every other check stays. Fail loudly if upstream moved it.
awk '
  /^func ResourceLocation\(/ { inside=1 }
  inside && /^\tif ip := netutils.ParseIPSloppy\(podIP\); ip == nil \|\| !ip.IsGlobalUnicast\(\) \{$/ {
    sub(/!ip.IsGlobalUnicast\(\)/, "!(ip.IsGlobalUnicast() || ip.IsLoopback())"); done++
  }
  inside && /^}$/ { inside=0 }
  { print }
  END { if (done != 1) { print "pod IP check not found in pod ResourceLocation" > "/dev/stderr"; exit 1 } }
' "$file" > "$file.patched"
mv "$file.patched" "$file"
mkdir -p "$out/mod"
cp go.mod "$out/mod/go.mod"
cp go.sum "$out/mod/go.sum"
printf '\nreplace k8s.io/kubernetes => %s\n' "$src" >> "$out/mod/go.mod"

mkdir -p "$out/bin.tmp"
# Stamp the version as the upstream release build does, so `kubectl version` and
# the node's VERSION column show the real release.
minor=$(echo "$version" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
ldflags="$ldflags -X $vpkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
go build -modfile "$out/mod/go.mod" -trimpath -ldflags="$ldflags" -o "$out/bin.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  ./cmd/etcd
# agnhost under its own name, as upstream's image does (its entrypoint is /agnhost).
go build -modfile "$out/mod/go.mod" -trimpath -ldflags="-s -w" -o "$out/bin.tmp/agnhost" \
  k8s.io/kubernetes/test/images/agnhost
# The files upstream's agnhost image carries besides the program (its Dockerfile
# ADDs them at /): the node shows them to agnhost containers at those paths.
mkdir -p "$out/bin.tmp/agnhost-files"
cp "$src/test/images/agnhost/porter/localhost.crt" "$src/test/images/agnhost/porter/localhost.key" "$out/bin.tmp/agnhost-files/"
rm -rf "$out/bin"
mv "$out/bin.tmp" "$out/bin"
echo "$version" > "$out/version"
echo "$stamp" > "$out/stamp"
echo "upstream $version binaries built in $out/bin"
