#!/usr/bin/env bash
# Builds the pinned Go tools the engine tests need (Pulumi CLI, Python language
# host, Kubernetes provider plugin, a kube control plane, etcd, kwok, CoreDNS,
# FerretDB, actionlint, cgr-engine with its Diameter dictionaries) from the Go module proxy
# into a cache outside the repository.
# Idempotent: a tool whose binaries exist and whose stamp records the same pin
# is skipped. Pins live in scripts/tool-versions.env.
#
# usage: scripts/bootstrap-tools.sh [TOOL...]   (default: all, slowest first)
# env:   IMS_CORE_TOOLS  cache dir (default ~/.cache/ims-core-tools); binaries in $IMS_CORE_TOOLS/bin,
#        kwok's stage definitions in $IMS_CORE_TOOLS/share/kwok/stages-fast.yaml
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tool-versions.env
source "$here/tool-versions.env"

CACHE=${IMS_CORE_TOOLS:-$HOME/.cache/ims-core-tools}
BIN=$CACHE/bin
WORK=$CACHE/work
STAMPS=$CACHE/stamps
mkdir -p "$BIN" "$WORK" "$STAMPS"

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
# Static binaries, no C toolchain needed; never switch Go toolchains behind our back.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
GO_BUILD=(nice -n 10 go build -trimpath)
LDFLAGS_BASE='-s -w'

log() { printf '[bootstrap] %s\n' "$*"; }

# fresh_module NAME: prints the path of an empty wrapper module under the cache.
fresh_module() {
  local dir=$WORK/$1
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module ims-core-tools/%s\n\ngo 1.26\n' "$1" >"$dir/go.mod"
  echo "$dir"
}

# module_dir MODULE@VERSION: downloads a module and prints its directory in the module cache.
module_dir() {
  go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

# run_build TOOL PIN FUNC OUTPUT...: runs FUNC unless every OUTPUT (relative to bin/)
# exists and the stamp says PIN.
run_build() {
  local tool=$1 pin=$2 fn=$3; shift 3
  local stamp=$STAMPS/$tool b lock
  up_to_date() {
    for b in "$@"; do [ -e "$BIN/$b" ] || return 1; done
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pin" ]
  }
  if up_to_date "$@"; then
    log "$tool $pin already built, skipping"
    return 0
  fi
  # Another bootstrap (a second shell, a test run) may be building the same tool:
  # wait for it, then look again, instead of racing it in the same work dir.
  exec {lock}>"$STAMPS/$tool.lock"
  if ! flock -n "$lock"; then
    log "$tool is being built by another bootstrap, waiting ..."
    flock "$lock"
  fi
  if up_to_date "$@"; then
    log "$tool $pin already built, skipping"
    exec {lock}>&-
    return 0
  fi
  log "building $tool $pin ..."
  rm -f "$stamp"
  local t0=$SECONDS
  "$fn"
  local dt=$((SECONDS - t0))
  echo "$pin" >"$stamp"
  printf '%s\t%s\t%ss\t%s\n' "$tool" "$pin" "$dt" "$(date -u +%FT%TZ)" >>"$CACHE/build-times.txt"
  log "building $tool $pin ... done in ${dt}s"
  exec {lock}>&-
}

build_pulumi() {
  local dir; dir=$(fresh_module pulumi)
  ( cd "$dir"
    go mod edit -replace "github.com/atotto/clipboard=$PULUMI_CLIPBOARD_REPLACE"
    go get "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION" "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION"
    go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$PULUMI_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/pulumi" \
      -ldflags "$LDFLAGS_BASE -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
      github.com/pulumi/pulumi/pkg/v3/cmd/pulumi )
}

build_language_python() {
  local dir; dir=$(fresh_module pulumi-language-python)
  local pkg=github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
  ( cd "$dir"
    go get "$pkg@$PULUMI_LANGUAGE_PYTHON_SDK_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/pulumi-language-python" \
      -ldflags "$LDFLAGS_BASE -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_LANGUAGE_PYTHON_SDK_VERSION" \
      "$pkg" )
  # The host runs this script (from the SDK matching the PyPI pin) from beside its own binary.
  local sdk; sdk=$(cd "$dir" && module_dir "github.com/pulumi/pulumi/sdk/v3@$PULUMI_PYTHON_EXEC_SDK_VERSION")
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
}

# The plugin that runs a program's own Python resource providers (pulumi.dynamic: the generated
# Valkey password, the storage-size guard). A shell script the official CLI ships beside its
# binary; here it comes from the SDK matching the PyPI pin. No build: a copy (well under 1 s).
build_python_dynamic_provider() {
  local dir; dir=$(fresh_module pulumi-resource-pulumi-python)
  local sdk; sdk=$(cd "$dir" && module_dir "github.com/pulumi/pulumi/sdk/v3@$PULUMI_PYTHON_EXEC_SDK_VERSION")
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
}

build_kubernetes_provider() {
  local dir; dir=$(fresh_module pulumi-resource-kubernetes)
  local mod=github.com/pulumi/pulumi-kubernetes/provider/v4
  ( cd "$dir"
    local src; src=$(module_dir "$mod@$K8S_PROVIDER_PSEUDO")/cmd/pulumi-resource-kubernetes
    # main.go embeds files that upstream generates at release time (generate.go):
    # the schema with its version set, and the terraform mapping, both re-serialised.
    install -m 0644 "$src/main.go" main.go
    python3 - "$src" "$K8S_PROVIDER_VERSION" <<'PY'
import json, sys
src, version = sys.argv[1], sys.argv[2]
with open(f"{src}/schema.json") as f:
    schema = json.load(f)
schema["version"] = version
with open("schema-embed.json", "w") as f:
    json.dump(schema, f, separators=(",", ":"), ensure_ascii=False)
with open(f"{src}/terraform-mapping.json") as f:
    mapping = json.load(f)
with open("terraform-mapping-embed.json", "w") as f:
    json.dump(mapping, f, separators=(",", ":"), ensure_ascii=False)
PY
    go mod edit -replace "github.com/pulumi/pulumi-kubernetes/sdk/v4=github.com/pulumi/pulumi-kubernetes/sdk/v4@$K8S_PROVIDER_SDK_VERSION"
    go get "$mod@$K8S_PROVIDER_PSEUDO"
    go mod tidy
    "${GO_BUILD[@]}" -o "$BIN/pulumi-resource-kubernetes" \
      -ldflags "$LDFLAGS_BASE -X $mod/pkg/version.Version=$K8S_PROVIDER_VERSION" . )
}

# kube_wrapper DIR: turns DIR into a module that requires k8s.io/kubernetes with its
# staging modules pointed at the published releases (shared by the control plane and the node).
kube_wrapper() {
  local v=$KUBERNETES_VERSION staging=v0.${KUBERNETES_VERSION#v1.}
  ( cd "$1"
    local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$v" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    local m
    for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod"); do
      go mod edit -replace "$m=$m@$staging"
    done
    go mod edit -require "k8s.io/kubernetes@$v" )
}

# kube_ldflags: the version ldflags without which clients see v0.0.0.
kube_ldflags() {
  local v=$KUBERNETES_VERSION minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local vp=k8s.io/component-base/version
  printf '%s' "$LDFLAGS_BASE -X $vp.gitVersion=$v -X $vp.gitMajor=1 -X $vp.gitMinor=$minor -X $vp.gitTreeState=clean"
  printf '%s' " -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

# The node tier's kubelet and kube-proxy: same module and flags as the control plane.
build_kube_node() {
  local dir; dir=$(fresh_module kube-node)
  kube_wrapper "$dir"
  ( cd "$dir"
    go get "k8s.io/kubernetes/cmd/kubelet@$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/kube-proxy@$KUBERNETES_VERSION"
    local ld c; ld=$(kube_ldflags)
    for c in kubelet kube-proxy; do
      log "  linking $c"
      "${GO_BUILD[@]}" -o "$BIN/$c" -ldflags "$ld" "k8s.io/kubernetes/cmd/$c"
    done )
}

# NetworkPolicy enforcer for the node tier: kube-router with only its firewall controller
# (iptables + ipset). The proxy serves v2.1.0 as the newest v2 release.
build_kube_router() {
  local dir; dir=$(fresh_module kube-router)
  ( cd "$dir"
    go get "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/kube-router" \
      -ldflags "$LDFLAGS_BASE -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
      github.com/cloudnativelabs/kube-router/v2/cmd/kube-router )
}

build_kube_control_plane() {
  local dir; dir=$(fresh_module kubernetes)
  local v=$KUBERNETES_VERSION staging=v0.${KUBERNETES_VERSION#v1.}
  ( cd "$dir"
    local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$v" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    # k8s.io/kubernetes requires its staging modules at v0.0.0 via local replaces;
    # point each at the published release of the same minor/patch.
    local m
    for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod"); do
      go mod edit -replace "$m=$m@$staging"
    done
    go mod edit -require "k8s.io/kubernetes@$v"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kube-controller-manager@$v" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$v"
    local minor=${v#v1.}; minor=${minor%%.*}
    local vp=k8s.io/component-base/version
    local ld="$LDFLAGS_BASE -X $vp.gitVersion=$v -X $vp.gitMajor=1 -X $vp.gitMinor=$minor -X $vp.gitTreeState=clean"
    ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
      log "  linking $c"
      "${GO_BUILD[@]}" -o "$BIN/$c" -ldflags "$ld" "k8s.io/kubernetes/cmd/$c"
    done )
}

build_etcd() {
  local dir; dir=$(fresh_module etcd)
  ( cd "$dir"
    # etcd's own main.go lives in the root module, which is not meant to be
    # depended on; this is the same one-liner against the server module.
    cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go mod tidy
    "${GO_BUILD[@]}" -o "$BIN/etcd" \
      -ldflags "$LDFLAGS_BASE -X go.etcd.io/etcd/api/v3/version.GitSHA=release-$ETCD_VERSION" . )
}

build_kwok() {
  local dir; dir=$(fresh_module kwok)
  ( cd "$dir"
    go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
    local ld="$LDFLAGS_BASE -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/kwok" -ldflags "$ld" sigs.k8s.io/kwok/cmd/kwok
    "${GO_BUILD[@]}" -o "$BIN/kwokctl" -ldflags "$ld" sigs.k8s.io/kwok/cmd/kwokctl
    # kwok without stages refuses to start ("no stages found"). Ship the "fast" set
    # kwokctl uses by default: nodes Ready at once, lease heartbeats, pods Ready at once.
    local stages; stages=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")/kustomize/stage
    mkdir -p "$CACHE/share/kwok"
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo '---'; cat "$stages/$f"
    done >"$CACHE/share/kwok/stages-fast.yaml" )
}

build_coredns() {
  local dir; dir=$(fresh_module coredns)
  ( cd "$dir"
    go get "github.com/coredns/coredns@$COREDNS_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/coredns" -ldflags "$LDFLAGS_BASE" github.com/coredns/coredns )
}

# FerretDB reads build/version/version.txt (embedded) and panics when it does not hold a
# version, which a plain `go install` leaves empty: build from a writable copy of the module.
build_ferretdb() {
  local src; src=$(cd "$(fresh_module ferretdb)" && module_dir "github.com/FerretDB/FerretDB@$FERRETDB_VERSION")
  local dir=$WORK/ferretdb/src
  rm -rf "$dir" && cp -r "$src" "$dir" && chmod -R u+w "$dir"
  echo "$FERRETDB_VERSION" >"$dir/build/version/version.txt"
  ( cd "$dir" && "${GO_BUILD[@]}" -o "$BIN/ferretdb" -ldflags "$LDFLAGS_BASE" ./cmd/ferretdb )
}

build_actionlint() {
  local dir; dir=$(fresh_module actionlint)
  ( cd "$dir"
    go get "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/actionlint" \
      -ldflags "$LDFLAGS_BASE -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
      github.com/rhysd/actionlint/cmd/actionlint )
}

build_cgrates() {
  local dir; dir=$(fresh_module cgrates)
  ( cd "$dir"
    # `go install ...@version` reads the module's version list, which the proxy refuses;
    # requiring the release from a wrapper module needs only that version.
    go get "github.com/cgrates/cgrates@$CGRATES_VERSION"
    "${GO_BUILD[@]}" -o "$BIN/cgr-engine" -ldflags "$LDFLAGS_BASE" github.com/cgrates/cgrates/cmd/cgr-engine
    # cgr-engine refuses to start without its Diameter dictionaries (dictionaries_path).
    local src; src=$(module_dir "github.com/cgrates/cgrates@$CGRATES_VERSION")
    rm -rf "$CACHE/share/cgrates" && mkdir -p "$CACHE/share/cgrates/diameter"
    cp -r "$src/data/diameter/dict" "$CACHE/share/cgrates/diameter/dict"
    chmod -R u+w "$CACHE/share/cgrates" )
}

all_tools=(pulumi language-python python-dynamic-provider kubernetes-provider kube-control-plane kube-node kube-router etcd kwok coredns ferretdb actionlint cgrates)
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=("${all_tools[@]}")
for t in "${tools[@]}"; do
  case $t in
    pulumi) run_build pulumi "$PULUMI_VERSION" build_pulumi pulumi ;;
    language-python)
      run_build language-python "$PULUMI_LANGUAGE_PYTHON_SDK_VERSION+exec-$PULUMI_PYTHON_EXEC_SDK_VERSION" \
        build_language_python pulumi-language-python pulumi-language-python-exec ;;
    python-dynamic-provider)
      run_build python-dynamic-provider "$PULUMI_PYTHON_EXEC_SDK_VERSION" \
        build_python_dynamic_provider pulumi-resource-pulumi-python ;;
    kubernetes-provider)
      run_build kubernetes-provider "$K8S_PROVIDER_PSEUDO+sdk-$K8S_PROVIDER_SDK_VERSION+$K8S_PROVIDER_VERSION" \
        build_kubernetes_provider pulumi-resource-kubernetes ;;
    kube-control-plane)
      run_build kube-control-plane "$KUBERNETES_VERSION" build_kube_control_plane \
        kube-apiserver kube-controller-manager kube-scheduler ;;
    kube-node) run_build kube-node "$KUBERNETES_VERSION" build_kube_node kubelet kube-proxy ;;
    kube-router) run_build kube-router "$KUBE_ROUTER_VERSION" build_kube_router kube-router ;;
    etcd) run_build etcd "$ETCD_VERSION" build_etcd etcd ;;
    kwok) run_build kwok "$KWOK_VERSION" build_kwok kwok kwokctl ../share/kwok/stages-fast.yaml ;;
    coredns) run_build coredns "$COREDNS_VERSION" build_coredns coredns ;;
    ferretdb) run_build ferretdb "$FERRETDB_VERSION" build_ferretdb ferretdb ;;
    actionlint) run_build actionlint "$ACTIONLINT_VERSION" build_actionlint actionlint ;;
    cgrates) run_build cgrates "$CGRATES_VERSION" build_cgrates cgr-engine ../share/cgrates/diameter/dict ;;
    *) echo "unknown tool: $t (known: ${all_tools[*]})" >&2; exit 2 ;;
  esac
done
log "all done; binaries in $BIN"
