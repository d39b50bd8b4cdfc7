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

# The seed's flow: a workspace, the cluster connected to it, the ML extension,
# and the cluster attached as compute.
wsdir=${OUTPOST_WORKSPACE_DIR:-$HOME/.outpost/workspace}
wsaddr=127.0.0.1:8443
step "outpost workspace serve (in the background, log in $wsdir.log)"
if ! curl -fsS --cacert "$wsdir/tls/ca.crt" "https://$wsaddr/healthz" >/dev/null 2>&1; then
  mkdir -p "$(dirname "$wsdir")"
  nohup $outpost workspace serve --addr $wsaddr --data-dir "$wsdir" >"$wsdir.log" 2>&1 &
  echo $! >"$wsdir.pid"
  for i in $(seq 1 100); do
    curl -fsS --cacert "$wsdir/tls/ca.crt" "https://$wsaddr/healthz" >/dev/null 2>&1 && break
    if ! kill -0 "$(cat "$wsdir.pid")" 2>/dev/null; then
      echo "the workspace did not start:" >&2
      tail -5 "$wsdir.log" >&2
      exit 1
    fi
    sleep 0.1
  done
fi
$outpost login --url "https://$wsaddr" --token "$(cat "$wsdir/admin-token")" --ca-file "$wsdir/tls/ca.crt"

step "outpost connectedk8s connect --name local --resource-group outpost"
if ! $outpost connectedk8s show --name local --resource-group outpost >/dev/null 2>&1; then
  $outpost connectedk8s connect --name local --resource-group outpost
fi
$outpost connectedk8s show --name local --resource-group outpost

step "outpost k8s-extension create ... --config enableTraining=True enableInference=True allowInsecureConnections=True"
if ! $outpost k8s-extension show --name arcml-extension --cluster-type connectedClusters --cluster-name local --resource-group outpost >/dev/null 2>&1; then
  $outpost k8s-extension create --name arcml-extension --extension-type Microsoft.AzureML.Kubernetes \
    --config enableTraining=True enableInference=True allowInsecureConnections=True \
    --cluster-type connectedClusters --cluster-name local --resource-group outpost --scope cluster
fi
$outpost k8s-extension show --name arcml-extension --cluster-type connectedClusters --cluster-name local --resource-group outpost
kubectl get pods -n azureml

step "outpost ml compute attach --type kubernetes --name local-compute ..."
if ! $outpost ml compute show --resource-group outpost --workspace-name ws --name local-compute >/dev/null 2>&1; then
  $outpost ml compute attach --resource-group outpost --workspace-name ws --name local-compute \
    --resource-id /resourceGroups/outpost/connectedClusters/local --type kubernetes --identity-type SystemAssigned
fi
$outpost ml compute show --resource-group outpost --workspace-name ws --name local-compute

# A data scientist's turn: the Azure ML job file of examples/jobs/sklearn-iris runs as it is
# (its compute is azureml:local-compute), its log streams, and the trained model comes back.
step "outpost ml job create -f examples/jobs/sklearn-iris/job.yml ... (then stream it)"
job=$($outpost ml job create -f examples/jobs/sklearn-iris/job.yml --resource-group outpost --workspace-name ws --query name -o tsv)
$outpost ml job stream --name "$job" --resource-group outpost --workspace-name ws

step "outpost ml job download --name $job --all --download-path $wsdir-downloads/$job"
$outpost ml job download --name "$job" --resource-group outpost --workspace-name ws --all --download-path "$wsdir-downloads/$job"
find "$wsdir-downloads/$job" -type f | sort

# Then serving: the model of examples/endpoints (trained here with Debian's scikit-learn, the
# Python the node's pods run), an online endpoint and its blue deployment from the Azure ML
# files, called through the extension's router (azureml-fe) with the endpoint's key.
step "outpost ml online-endpoint create -f examples/endpoints/endpoint.yml; online-deployment create -f examples/endpoints/blue-deployment.yml --all-traffic"
/usr/bin/python3 examples/endpoints/train.py
if ! $outpost ml online-endpoint show --name diabetes-endpoint --resource-group outpost --workspace-name ws >/dev/null 2>&1; then
  $outpost ml online-endpoint create -f examples/endpoints/endpoint.yml --resource-group outpost --workspace-name ws
fi
if ! $outpost ml online-deployment show --name blue --endpoint-name diabetes-endpoint --resource-group outpost --workspace-name ws >/dev/null 2>&1; then
  $outpost ml online-deployment create -f examples/endpoints/blue-deployment.yml --all-traffic --resource-group outpost --workspace-name ws
fi
# A deployment made by an earlier run may be rolling out again (the extension above was
# updated with a rebuilt binary): wait until it serves.
for i in $(seq 1 180); do
  state=$($outpost ml online-deployment show --name blue --endpoint-name diabetes-endpoint --resource-group outpost --workspace-name ws --query provisioning_state -o tsv)
  [ "$state" = Succeeded ] && break
  if [ "$state" = Failed ] || [ "$i" = 180 ]; then
    echo "deployment blue is $state:" >&2
    $outpost ml online-deployment show --name blue --endpoint-name diabetes-endpoint --resource-group outpost --workspace-name ws >&2
    exit 1
  fi
  [ "$i" = 1 ] && echo "deployment blue is $state; waiting until it is Succeeded..."
  sleep 1
done

step "outpost ml online-endpoint invoke --name diabetes-endpoint --request-file examples/endpoints/sample-request.json"
$outpost ml online-endpoint invoke --name diabetes-endpoint --request-file examples/endpoints/sample-request.json --resource-group outpost --workspace-name ws
echo

step "curl the scoring URI with the endpoint's key"
uri=$($outpost ml online-endpoint show --name diabetes-endpoint --resource-group outpost --workspace-name ws --query scoring_uri -o tsv)
key=$($outpost ml online-endpoint get-credentials --name diabetes-endpoint --resource-group outpost --workspace-name ws --query primaryKey -o tsv)
echo "curl -H 'Authorization: Bearer <key>' -H 'Content-Type: application/json' -d @examples/endpoints/sample-request.json $uri"
curl -fsS -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d @examples/endpoints/sample-request.json "$uri"
echo

cat <<MSG

The cluster and the workspace are still running. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get pods -A
  $outpost cluster status
  $outpost connectedk8s list
  $outpost k8s-extension show --name arcml-extension --cluster-type connectedClusters --cluster-name local --resource-group outpost -o yaml
  $outpost ml job create -f examples/jobs/hello-world/job.yml --resource-group outpost --workspace-name ws --stream
  $outpost ml job list --resource-group outpost --workspace-name ws
  $outpost ml online-endpoint show --name diabetes-endpoint --resource-group outpost --workspace-name ws
  $outpost ml online-deployment get-logs --name blue --endpoint-name diabetes-endpoint --lines 20 --resource-group outpost --workspace-name ws
The Studio (web UI): https://$wsaddr/studio/ (trust $wsdir/tls/ca.crt in the browser; sign in
with the token in $wsdir/admin-token).
The Python SDK: /usr/bin/python3 -m pip install --no-build-isolation ./sdk/python
To stop everything:
  kill \$(cat $wsdir.pid)            # the workspace
  $outpost cluster down          # the cluster (add --purge to delete its state)
MSG
