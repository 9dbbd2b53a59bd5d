#!/usr/bin/env bash
# Validates deploy/k8s/*.yaml offline against the Kubernetes OpenAPI schemas bundled with the
# kubernetes-validate package (strict: unknown fields are errors), and checks that the validator
# does reject a broken manifest, so a silently passing validator cannot pass CI. The package is
# installed into a virtualenv under target/ on first use; when it cannot be installed (no
# network, no python3 venv) the check is skipped with one line.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/ci-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet kubernetes-validate; } > /dev/null 2>&1; then
    echo "validate-deploy: skipped (kubernetes-validate cannot be installed here)"
    exit 0
  fi
fi
validate() { "$venv/bin/kubernetes-validate" --strict --quiet "$@"; }

validate deploy/k8s/*.yaml
broken=$(mktemp --suffix=.yaml)
trap 'rm -f "$broken"' EXIT
sed 's/completionMode: Indexed/completionModes: Indexed/' deploy/k8s/loadgen-job.yaml > "$broken"
if validate "$broken" > /dev/null 2>&1; then
  echo "validate-deploy: the validator accepted a manifest with an unknown field" >&2
  exit 1
fi
echo "validate-deploy: ok: $(ls deploy/k8s/*.yaml | wc -l) manifest files valid, a broken one rejected"
