#!/usr/bin/env bash
# Renders every kustomization under k8s/ and validates the result:
#   1. kubectl kustomize <dir>                 (any render error fails)
#   2. kubernetes-validate --strict -k <ver>   (OpenAPI schemas shipped in the PyPI package;
#                                               unknown fields are errors)
#   3. check_invariants.py on each deployable tree (base and overlays): headless Service,
#      Parallel pod management, quorum-keeping PDB, game server drain budget, hardening, ...
#
# Installs what it needs on Debian 12 when missing (idempotent; a no-op when present):
# kubectl from Debian's kubernetes-client package, kubernetes-validate from PyPI.
#
# Usage: bash k8s/validate.sh
# Environment: KUBECTL (default kubectl), K8S_VERSIONS (default "1.30.0 1.37.0": the oldest
# Kubernetes these manifests support, the preStop sleep action needs 1.30, and the newest
# schema kubernetes-validate 1.37.0 carries).
set -euo pipefail

K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBECTL=${KUBECTL:-kubectl}
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
KUBERNETES_VALIDATE_VERSION=1.37.0
PYTHON=${PYTHON:-python3}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- tools ---------------------------------------------------------------------------------
if ! command -v "$KUBECTL" >/dev/null 2>&1; then
    echo "k8s: kubectl not found; installing Debian's kubernetes-client"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
    KUBECTL=kubectl
fi

if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "k8s: $PYTHON or its pip not found; installing Debian's python3 and python3-pip"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
    PYTHON=python3
fi
if ! "$PYTHON" -m pip show kubernetes-validate >/dev/null 2>&1; then
    echo "k8s: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION from PyPI"
    pip_install=("$PYTHON" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
    # Debian's own python3 refuses pip installs (PEP 668); pyenv's or a venv's does not.
    "${pip_install[@]}" || "${pip_install[@]}" --break-system-packages
fi
validator=("$PYTHON" -m kubernetes_validate)

kubectl_version=$("$KUBECTL" version --client --short 2>/dev/null || "$KUBECTL" version --client 2>/dev/null || true)
kubectl_version=$(echo "$kubectl_version" | tr '\n' ' ')
echo "k8s: kubectl: $(command -v "$KUBECTL") ($kubectl_version)"
echo "k8s: kubernetes-validate $("${validator[@]}" --version), schemas: Kubernetes $K8S_VERSIONS (strict)"

# --- render, validate, check ---------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$K8S_DIR/.."
mapfile -t dirs < <(find k8s -name kustomization.yaml -printf '%h\n' | sort)
if [ "${#dirs[@]}" = 0 ]; then
    echo "k8s: no kustomization found" >&2
    exit 1
fi

failed=0
rendered=0
for dir in "${dirs[@]}"; do
    out="$work/$(echo "$dir" | tr '/' '_').yaml"
    if ! "$KUBECTL" kustomize "$dir" >"$out" 2>"$out.err"; then
        echo "FAIL render $dir:"
        grep -v -e "is deprecated" "$out.err" | sed 's/^/    /' || true
        failed=$((failed + 1))
        continue
    fi
    # Newer kustomize warns that bases/commonLabels/patchesStrategicMerge are deprecated; they
    # are kept on purpose (Debian 12's kubectl 1.20 has kustomize v2.0.3). Show anything else.
    grep -v -e "is deprecated" -e '^$' "$out.err" | sed "s|^|    $dir: |" || true
    rendered=$((rendered + 1))
    objects=$(grep -c '^kind:' "$out" || true)
    echo "ok   render $dir: $objects objects: $(grep '^kind:' "$out" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $3, $1; sep=", "}')"

    for version in $K8S_VERSIONS; do
        if "${validator[@]}" --strict --quiet -k "$version" "$out" >"$out.validate" 2>&1; then
            echo "ok   validate $dir against Kubernetes $version (strict): $objects objects"
        else
            echo "FAIL validate $dir against Kubernetes $version (strict):"
            sed "s|$out|$dir|; s/^/    /" "$out.validate"
            failed=$((failed + 1))
        fi
    done

    case "$dir" in
        k8s/base | k8s/overlays/*)
            if ! "$PYTHON" "$K8S_DIR/check_invariants.py" "$out" --name "$dir"; then
                failed=$((failed + 1))
            fi
            ;;
    esac
done

if [ "$failed" != 0 ]; then
    echo "k8s: $failed check(s) FAILED ($rendered of ${#dirs[@]} kustomizations rendered)"
    exit 1
fi
echo "k8s: all ${#dirs[@]} kustomizations render and validate (Kubernetes $K8S_VERSIONS, strict); invariants hold"
