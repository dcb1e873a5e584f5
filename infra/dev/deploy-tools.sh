#!/usr/bin/env bash
# Installs the deployment tools from the Python registry, pinned, into one virtual
# environment outside the checkout (it survives between CI runs on the same machine and
# is rebuilt when absent or when a pin changes):
#
#   cargo-lambda   `cargo lambda build|watch|invoke` (infra/lambda/, docs/DEPLOY.md)
#   ziglang        the linker cargo-lambda cross-compiles with (arm64 and x86_64)
#   cfn-lint       checks infra/aws/template.yaml against the CloudFormation spec
#   checkov        the policy scanner over the template and infra/k8s/
#   kubernetes-validate  infra/k8s/ against the Kubernetes API schemas it ships
#
#   bash infra/dev/deploy-tools.sh          # installs if needed; prints the bin directory
#   PATH="$(bash infra/dev/deploy-tools.sh):$PATH"
#
# Nothing here needs AWS credentials or a cluster.
set -euo pipefail
VENV="${RAINLOGS_DEPLOY_TOOLS:-$HOME/.cache/rainlogs/deploy-tools}"
PINS=(
  cargo-lambda==1.9.2
  ziglang==0.14.1
  cfn-lint==1.58.0
  checkov==3.3.30
  kubernetes-validate==1.37.0
)
stamp="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)"
if [[ "$(cat "$VENV/.pins" 2>/dev/null)" != "$stamp" ]]; then
  echo "[deploy-tools] installing ${PINS[*]} into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  echo "$stamp" > "$VENV/.pins"
fi
echo "$VENV/bin"
