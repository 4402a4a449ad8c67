#!/usr/bin/env bash
# Build the binaries of the Kubernetes test control plane from the Go module proxy, once per
# version, and print the directory that holds them all (the only line written to stdout).
#
#   scripts/k8s/build.sh            # build what is missing, print the bin directory
#   scripts/k8s/build.sh --print    # print the bin directory; fail if anything is missing
#
# Versions come from scripts/k8s/versions.env. Layout under
# ${BACKSTOP_K8S_CACHE:-${XDG_CACHE_HOME:-~/.cache}/backstop/k8s}:
#
#   <kubernetes-version>/bin/   kube-apiserver kube-controller-manager kube-scheduler kubectl,
#                               plus links etcd, kwok, helm to the builds below
#   <kubernetes-version>/share/kwok-stages.yaml
#                               link to kwok's default stages (a --config for kwok)
#   etcd-<version>/bin/etcd     kwok-<version>/bin/kwok     helm-<version>/bin/helm
#   kwok-<version>/share/stages.yaml
#   src/                        generated wrapper modules (go.mod / go.sum)
#   build-times.tsv             one line per binary built: when, name, version, seconds
#
# kube-* and kubectl come from a wrapper module that requires k8s.io/kubernetes and replaces
# each k8s.io staging module with its v0.N.M tag (the list is read from the tag's own go.mod).
# etcd's main package (go.etcd.io/etcd/server/v3) is built through a wrapper module too, since
# its go.mod has replace directives that `go install pkg@version` refuses. kwok and helm use
# `go install pkg@version`. Each binary is built into a temporary file and renamed into place,
# so a half-built binary is never used; a lock serialises concurrent runs.
#
# Environment: BACKSTOP_GO_PARALLEL (go build -p, default 2), BACKSTOP_K8S_NICE (default 19).
# Go's module and build caches keep their defaults, so a rebuild after a version bump reuses
# every unchanged package.
set -euo pipefail
shopt -s inherit_errexit

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${BACKSTOP_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backstop/k8s}"
PARALLEL="${BACKSTOP_GO_PARALLEL:-2}"
NICE="${BACKSTOP_K8S_NICE:-19}"
KUBE_BIN="$CACHE_ROOT/$KUBERNETES_VERSION/bin"
ETCD_BIN="$CACHE_ROOT/etcd-$ETCD_VERSION/bin"
KWOK_BIN="$CACHE_ROOT/kwok-$KWOK_VERSION/bin"
HELM_BIN="$CACHE_ROOT/helm-$HELM_VERSION/bin"
KUBE_SHARE="$CACHE_ROOT/$KUBERNETES_VERSION/share"
KWOK_STAGES_FILE="$CACHE_ROOT/kwok-$KWOK_VERSION/share/stages.yaml"
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# kwok's default stages, as kwokctl configures them for a cluster: nodes turn Ready and renew a
# lease; pods turn Running, complete when their containers would, and go away when deleted.
KWOK_STAGES=(
  node/fast/node-initialize.yaml
  node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml
  pod/fast/pod-complete.yaml
  pod/fast/pod-delete.yaml
)

START_NS=$(date +%s%N)
CURRENT_TMP=""
trap '[[ -n "$CURRENT_TMP" ]] && rm -rf "$CURRENT_TMP"' EXIT

log() { printf '[k8s-build %6.1fs] %s\n' "$(elapsed)" "$*" >&2; }
die() {
  printf '[k8s-build] ERROR: %s\n' "$*" >&2
  exit 1
}
elapsed() { awk -v now="$(date +%s%N)" -v start="$START_NS" 'BEGIN { print (now - start) / 1e9 }'; }

all_present() {
  local name
  for name in "${KUBE_COMMANDS[@]}"; do [[ -x "$KUBE_BIN/$name" ]] || return 1; done
  [[ -x "$ETCD_BIN/etcd" && -x "$KWOK_BIN/kwok" && -x "$HELM_BIN/helm" ]] || return 1
  local link
  for link in etcd kwok helm; do [[ -x "$KUBE_BIN/$link" ]] || return 1; done
  [[ -f "$KUBE_SHARE/kwok-stages.yaml" ]] || return 1
}

check_go() {
  command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go >= $GO_MIN_VERSION"
  local have
  have="$(go env GOVERSION)"
  have="${have#go}"
  have="${have%%[- ]*}"
  if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
    die "Go $have is older than $GO_MIN_VERSION, which these versions need; install a newer Go" \
      "or set GOTOOLCHAIN=go$GO_MIN_VERSION+auto to let the go command fetch one"
  fi
}

record() { # name version seconds
  printf '%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" "$3" >>"$CACHE_ROOT/build-times.tsv"
  log "$1 $2: built in $3 s"
}

gobuild() { # dir, then go arguments: run one niced go command in a module directory
  local dir=$1
  shift
  (cd "$dir" && nice -n "$NICE" go "$@")
}

# build_in_module DEST MODULE_DIR PACKAGE LDFLAGS: go build one main package into DEST.
build_in_module() {
  local dest=$1 moddir=$2 pkg=$3 ldflags=$4 name version=$5 start
  name="$(basename "$dest")"
  if [[ -x "$dest" ]]; then
    log "$name $version: cached"
    return
  fi
  mkdir -p "$(dirname "$dest")"
  CURRENT_TMP="$dest.tmp.$$"
  log "$name $version: go build $pkg"
  start=$SECONDS
  gobuild "$moddir" build -p "$PARALLEL" -ldflags "$ldflags" -o "$CURRENT_TMP" "$pkg" ||
    die "$name: 'go build $pkg' failed in $moddir (output above)"
  mv -f "$CURRENT_TMP" "$dest"
  CURRENT_TMP=""
  record "$name" "$version" $((SECONDS - start))
}

# install_module DEST PACKAGE@VERSION LDFLAGS: go install into a temporary GOBIN, then rename.
install_module() {
  local dest=$1 pkgver=$2 ldflags=$3 name start
  name="$(basename "$dest")"
  if [[ -x "$dest" ]]; then
    log "$name ${pkgver#*@}: cached"
    return
  fi
  mkdir -p "$(dirname "$dest")"
  CURRENT_TMP="$(mktemp -d "$(dirname "$dest")/.install.XXXXXX")"
  log "$name: go install $pkgver"
  start=$SECONDS
  GOBIN="$CURRENT_TMP" gobuild "$CURRENT_TMP" install -p "$PARALLEL" -ldflags "$ldflags" "$pkgver" ||
    die "$name: 'go install $pkgver' failed (output above)"
  mv -f "$CURRENT_TMP/$name" "$dest"
  rm -rf "$CURRENT_TMP"
  CURRENT_TMP=""
  record "$name" "${pkgver#*@}" $((SECONDS - start))
}

# The wrapper module for k8s.io/kubernetes: staging modules are required at v0.0.0 and replaced
# by ./staging paths in the tag's go.mod; here each is replaced by its published v0.N.M tag.
kubernetes_module() {
  local dir="$CACHE_ROOT/src/kubernetes-$KUBERNETES_VERSION" gomod staging_version modules
  mkdir -p "$dir"
  if [[ ! -f "$dir/go.mod" ]]; then
    log "kubernetes $KUBERNETES_VERSION: reading the tag's go.mod"
    gomod="$(module_file GoMod "k8s.io/kubernetes@$KUBERNETES_VERSION")"
    staging_version="v0.${KUBERNETES_VERSION#v1.}"
    # Modules both required at v0.0.0 and replaced by a ./staging path.
    modules="$(awk '
      $2 == "v0.0.0" && $1 ~ /^k8s\.io\// { required[$1] = 1 }
      $2 == "=>" && $3 ~ /^\.\/staging\// { staged[$1] = 1 }
      END { for (m in staged) if (m in required) print m }' "$gomod" | sort)"
    [[ -n "$modules" ]] || die "no staging modules found in $gomod"
    {
      echo "// Generated by scripts/k8s/build.sh: builds Kubernetes commands from the module proxy."
      echo "module backstop-k8s-build"
      echo
      echo "go $GO_MIN_VERSION"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      echo "replace ("
      local module
      for module in $modules; do echo "	$module => $module $staging_version"; done
      echo ")"
    } >"$dir/go.mod.tmp"
    mv -f "$dir/go.mod.tmp" "$dir/go.mod"
    log "kubernetes $KUBERNETES_VERSION: replaced $(wc -w <<<"$modules") staging modules with $staging_version"
  fi
  if [[ ! -f "$dir/.resolved" ]]; then
    local pkgs=()
    for name in "${KUBE_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
    log "kubernetes $KUBERNETES_VERSION: resolving dependencies (go get)"
    gobuild "$dir" get "${pkgs[@]}" || die "go get of the Kubernetes commands failed in $dir"
    touch "$dir/.resolved"
  fi
  echo "$dir"
}

etcd_module() {
  local dir="$CACHE_ROOT/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  if [[ ! -f "$dir/.resolved" ]]; then
    {
      echo "// Generated by scripts/k8s/build.sh: builds etcd's main package from the module proxy."
      echo "module backstop-etcd-build"
      echo
      echo "go $GO_MIN_VERSION"
      echo
      echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    } >"$dir/go.mod"
    log "etcd $ETCD_VERSION: resolving dependencies (go get)"
    gobuild "$dir" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" || die "go get of etcd failed in $dir"
    touch "$dir/.resolved"
  fi
  echo "$dir"
}

module_file() { # FIELD MODULE@VERSION: a path from `go mod download -json` (GoMod, Dir)
  local json path error
  json="$(gobuild "$CACHE_ROOT" mod download -json "$2" 2>&1)" || true
  path="$(sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$json")"
  if [[ -z "$path" || ! -e "$path" ]]; then
    error="$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
    die "could not download $2 (GOPROXY=$(go env GOPROXY)): ${error:-$json}"
  fi
  echo "$path"
}

kwok_stages() {
  [[ -f "$KWOK_STAGES_FILE" ]] && return
  local src stage
  src="$(module_file Dir "sigs.k8s.io/kwok@$KWOK_VERSION")"
  [[ -d "$src/kustomize/stage" ]] || die "no kustomize/stage in sigs.k8s.io/kwok@$KWOK_VERSION"
  mkdir -p "$(dirname "$KWOK_STAGES_FILE")"
  for stage in "${KWOK_STAGES[@]}"; do
    [[ -f "$src/kustomize/stage/$stage" ]] || die "kwok $KWOK_VERSION has no stage $stage"
    printf -- '---\n'
    cat "$src/kustomize/stage/$stage"
  done >"$KWOK_STAGES_FILE.tmp"
  mv -f "$KWOK_STAGES_FILE.tmp" "$KWOK_STAGES_FILE"
  log "kwok $KWOK_VERSION: default stages written to $KWOK_STAGES_FILE"
}

link_into() { # DIR TARGET [NAME]: a relative link, renamed into place so readers never see a gap
  local dir=$1 target=$2 name=${3:-$(basename "$2")}
  mkdir -p "$dir"
  ln -sfn "../../${target#"$CACHE_ROOT/"}" "$dir/.$name.link"
  mv -Tf "$dir/.$name.link" "$dir/$name"
}

main() {
  local mode=build
  case "${1:-}" in
    "") ;;
    --print) mode=print ;;
    *) die "usage: $0 [--print]" ;;
  esac
  mkdir -p "$CACHE_ROOT"
  if all_present; then
    echo "$KUBE_BIN"
    return
  fi
  [[ $mode == print ]] && die "binaries missing under $CACHE_ROOT; run $0 to build them"

  exec 9>"$CACHE_ROOT/.build.lock"
  flock 9 # another run may be building the same binaries: wait for it, then reuse its work
  check_go
  export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
  log "Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION"
  log "cache $CACHE_ROOT; go $(go env GOVERSION), -p $PARALLEL, nice $NICE"

  local major="${KUBERNETES_VERSION#v}" minor kube_ldflags=(-s -w) key value name
  minor="${major#*.}"
  minor="${minor%%.*}"
  major="${major%%.*}"
  for key in gitVersion gitMajor gitMinor gitTreeState buildDate; do
    case $key in
      gitVersion) value=$KUBERNETES_VERSION ;;
      gitMajor) value=$major ;;
      gitMinor) value=$minor ;;
      gitTreeState) value=clean ;;
      buildDate) value=1970-01-01T00:00:00Z ;;
    esac
    kube_ldflags+=("-X k8s.io/component-base/version.$key=$value" "-X k8s.io/client-go/pkg/version.$key=$value")
  done

  local need_kube=0 kube_dir etcd_dir
  for name in "${KUBE_COMMANDS[@]}"; do [[ -x "$KUBE_BIN/$name" ]] || need_kube=1; done
  if ((need_kube)); then
    kube_dir="$(kubernetes_module)"
    for name in "${KUBE_COMMANDS[@]}"; do
      build_in_module "$KUBE_BIN/$name" "$kube_dir" "k8s.io/kubernetes/cmd/$name" \
        "${kube_ldflags[*]}" "$KUBERNETES_VERSION"
    done
  fi

  if [[ ! -x "$ETCD_BIN/etcd" ]]; then
    etcd_dir="$(etcd_module)"
    build_in_module "$ETCD_BIN/etcd" "$etcd_dir" "go.etcd.io/etcd/server/v3" "-s -w" "$ETCD_VERSION"
  fi

  install_module "$KWOK_BIN/kwok" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "-s -w"
  kwok_stages

  # Helm's Makefile stamps its version and the Kubernetes version its client library speaks
  # (used for .Capabilities.KubeVersion by `helm template` and `helm lint`).
  local helm_gomod helm_k8s_minor helm_ldflags=(-s -w "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION")
  if [[ ! -x "$HELM_BIN/helm" ]]; then
    helm_gomod="$(module_file GoMod "helm.sh/helm/v3@$HELM_VERSION")"
    helm_k8s_minor="$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$helm_gomod")"
    [[ -n "$helm_k8s_minor" ]] || die "no k8s.io/client-go requirement in $helm_gomod"
    for key in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      helm_ldflags+=("-X $key.k8sVersionMajor=1" "-X $key.k8sVersionMinor=$helm_k8s_minor")
    done
  fi
  install_module "$HELM_BIN/helm" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "${helm_ldflags[*]}"

  link_into "$KUBE_BIN" "$ETCD_BIN/etcd"
  link_into "$KUBE_BIN" "$KWOK_BIN/kwok"
  link_into "$KUBE_BIN" "$HELM_BIN/helm"
  link_into "$KUBE_SHARE" "$KWOK_STAGES_FILE" kwok-stages.yaml
  all_present || die "binaries still missing after the build"
  log "done: $KUBE_BIN"
  echo "$KUBE_BIN"
}

main "$@"
