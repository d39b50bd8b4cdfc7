#!/usr/bin/env bash
# The quickstart: a local cluster, a sample Deployment behind a NodePort
# Service, a request through it, and its logs. The cluster stays up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
outpost=bin/outpost
step() { printf '\n==> %s\n' "$*"; }

step "outpost cluster up"
$outpost cluster up
KUBECONFIG=$($outpost cluster kubeconfig)
export KUBECONFIG

step "kubectl get nodes"
kubectl get nodes -o wide

step "kubectl apply -f examples/hello.yaml"
kubectl apply -f examples/hello.yaml
kubectl rollout status deployment/hello --timeout=120s
kubectl get pods -l app=hello -o wide
kubectl get endpointslices -l kubernetes.io/service-name=hello

step "curl http://127.0.0.1:30080/ (the NodePort Service)"
for i in $(seq 1 50); do
  if curl -fsS http://127.0.0.1:30080/; then break; fi
  sleep 0.2
done

step "kubectl logs deployment/hello"
kubectl logs deployment/hello --tail=5

cat <<MSG

The cluster is still running. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get pods -A
  $outpost cluster status
  $outpost cluster down          # stop everything (add --purge to delete its state)
MSG
