#!/usr/bin/env bash
# Installs helm from the Go module proxy (go install; no binary download) into k8s/.bin, and
# prints the binary's path on stdout. Idempotent: a helm of the wanted version already there is
# kept. Needs Go. The chart tests (k8s/test) find it there, or at $HELM_BIN.
#
#   HELM_BIN="$(k8s/get-helm.sh)"        # CI
#   HELM_VERSION=v3.22.0 k8s/get-helm.sh  # another version
#   HELM_INSTALL_DIR=/opt/bin k8s/get-helm.sh
set -euo pipefail

version="${HELM_VERSION:-v3.22.0}"
dir="${HELM_INSTALL_DIR:-$(cd "$(dirname "$0")" && pwd)/.bin}"
bin="$dir/helm"

if [ -x "$bin" ] && [ "$("$bin" version --template '{{.Version}}' 2>/dev/null || true)" = "$version" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "get-helm.sh: go is required (https://go.dev/doc/install, or apt-get install golang-go)" >&2; exit 1; }
mkdir -p "$dir"

# helm's own Makefile stamps the version and the Kubernetes version it renders for (that of its
# client-go, major+1) into the binary; a plain go install would say v1.20 and fail charts with a
# kubeVersion constraint. Read client-go's version from helm's go.mod in the module cache.
gomod="$(go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[ -f "$gomod" ] || { echo "get-helm.sh: could not download helm.sh/helm/v3@$version" >&2; exit 1; }
clientgo="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' "$gomod" | head -1)"
read -r cg_major cg_minor <<<"$clientgo"
kmajor=$((cg_major + 1))
kminor="$cg_minor"

ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=$kmajor -X $pkg.k8sVersionMinor=$kminor"
done

echo "get-helm.sh: building helm $version (Kubernetes $kmajor.$kminor) into $dir" >&2
GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
"$bin" version --template '{{.Version}}' >/dev/null
echo "$bin"
