#!/usr/bin/env bash
# One multi-pod run on a Kubernetes cluster: server + Service, a ConfigMap with a shared run id
# and a start time LEAD seconds ahead (pods must be scheduled and connected by then), the Indexed
# Job of load generators, then the merge Job. Needs kubectl pointed at the cluster and the image
# fork-echo:dev (deploy/Containerfile) where the nodes can pull it.
set -euo pipefail
cd "$(dirname "$0")"
lead=${LEAD:-60}
kubectl apply -f k8s/server.yaml
kubectl rollout status deployment/fork-echo --timeout=120s
kubectl delete job loadgen loadgen-merge --ignore-not-found
kubectl create configmap loadgen-run --dry-run=client -o yaml \
  --from-literal=run_id="k8s-$(date +%Y%m%d-%H%M%S)" \
  --from-literal=start_at="$(($(date +%s) + lead))" | kubectl apply -f -
kubectl apply -f k8s/loadgen-job.yaml
kubectl wait --for=condition=complete job/loadgen --timeout=900s
kubectl apply -f k8s/merge-job.yaml
kubectl wait --for=condition=complete job/loadgen-merge --timeout=120s
kubectl logs job/loadgen-merge
