#!/usr/bin/env bash
# Build and gate locally, as the CI workflow does. Run from the repository root (where dsedge.yaml is).
#   examples/ci/gate-local.sh                      build, then gate against the baseline
#   examples/ci/gate-local.sh --update-baseline    build, then write the baseline from this build
# Environment: DSEDGE_BUILD_ARGS (default "--target orin --bits 4"), DSEDGE_ARTIFACT
# (artifacts/candidate), DSEDGE_REPORTS (reports). Baseline and thresholds: dsedge.yaml's gate:.
# Exit status: dsedge's (0 pass, 1 regression or failed build check, 2 usage error).
set -euo pipefail

update=()
if [[ "${1:-}" == "--update-baseline" ]]; then
  update=(--update-baseline)
fi
artifact="${DSEDGE_ARTIFACT:-artifacts/candidate}"
reports="${DSEDGE_REPORTS:-reports}"
read -r -a build_args <<< "${DSEDGE_BUILD_ARGS:---target orin --bits 4}"

dsedge build "${build_args[@]}" -o "$artifact" --overwrite
if (( ${#update[@]} )); then
  exec dsedge gate "$artifact" "${update[@]}"
fi
status=0
dsedge gate "$artifact" --junit "$reports/dsedge-gate.xml" --summary "$reports/dsedge-gate.md" || status=$?
echo "report: $artifact/report.html   gate: $reports/dsedge-gate.md"
exit "$status"
