#!/usr/bin/env bash
# Validates the deployment files (CI runs this): docker-compose.yml against the Compose
# Specification, the Kubernetes manifests against the Kubernetes API schemas (strict: unknown
# fields fail), and all of them against the code and docs/configuration.md. Each validator is
# first shown a broken copy, which it must refuse.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    check-jsonschema==0.39.0 kubernetes-validate==1.37.0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sed 's/^    image: mandate:latest/    imag: mandate:latest/' docker-compose.yml > "$work/compose.yml"
sed 's/containerPort:/containerPorts:/' deploy/kubernetes/mandate.yaml > "$work/k8s.yaml"
if check-jsonschema --builtin-schema vendor.compose-spec "$work/compose.yml" > /dev/null 2>&1; then
    echo "check-jsonschema accepted a broken compose file" >&2; exit 1
fi
if kubernetes-validate --strict --quiet "$work/k8s.yaml" > /dev/null 2>&1; then
    echo "kubernetes-validate accepted a broken manifest" >&2; exit 1
fi

check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
echo "kubernetes manifests: valid"
python3 deploy/check_consistency.py
