#!/usr/bin/env bash
# Checks the deployment definitions offline (part of infra/test.sh; docs/DEPLOY.md):
#   - infra/aws/template.yaml: cfn-lint (the CloudFormation and SAM specs, SAM's own
#     transform run locally) and checkov (policy scan: IAM, encryption, logging, network);
#   - every function the template builds is a binary of the workspace (cargo metadata);
#   - infra/k8s/*.yaml: kubernetes-validate --strict (the API schemas it ships) and
#     checkov (pod security, probes, resources, network policies), and kustomization.yaml
#     lists every manifest but the Secret template.
# No AWS credentials, no cluster, no network: the tools come pinned from PyPI
# (infra/dev/deploy-tools.sh), checkov with --skip-download.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
PATH="$(bash infra/dev/deploy-tools.sh):$PATH"
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false BC_SKIP_MAPPING=TRUE

cfn-lint infra/aws/template.yaml
checkov --quiet --compact --skip-download --framework cloudformation -f infra/aws/template.yaml

# Each rust-cargolambda function's Binary is a [[bin]] of the workspace.
python3 - <<'PY'
import json, re, subprocess, sys
meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"]))
bins = {t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}
text = open("infra/aws/template.yaml").read()
wanted = re.findall(r"BuildProperties: \{Binary: ([\w-]+)\}", text)
missing = sorted(set(wanted) - bins)
if len(wanted) < 8 or missing:
    sys.exit(f"template functions {wanted}: not workspace binaries: {missing}")
print(f"template: {len(wanted)} functions, each a workspace binary")
PY

manifests=(infra/k8s/*.yaml)
manifests=("${manifests[@]/infra\/k8s\/kustomization.yaml}")
kubernetes-validate --strict --quiet ${manifests[@]}
checkov --quiet --compact --skip-download --framework kubernetes -d infra/k8s
for m in ${manifests[@]}; do
  name="$(basename "$m")"
  [[ "$name" == secret.yaml ]] && continue
  grep -qx "  - $name" infra/k8s/kustomization.yaml || { echo "error: infra/k8s/kustomization.yaml does not list $name" >&2; exit 1; }
done
echo "deploy lint: template and manifests clean in $((SECONDS - t0))s"
