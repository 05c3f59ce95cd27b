#!/usr/bin/env bash
# build-tools.sh builds the test bed's binaries into test/tools/bin/:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kwok (plus kwok's default node stages, in bin/kwok-stages/) and helm (for
# the chart's tests, test/chart), at the versions pinned in
# test/tools/versions.env, from the Go module proxy.
#
#   test/bed/build-tools.sh [kube|etcd|kwok|helm]...   (default: all)
#
# Each tool is rebuilt only when its stamp (pinned version, tool module's
# go.mod/go.sum, Go version, build flags) changes. When versions.env names a
# version that a tool module does not require yet, the module is regenerated
# (requires, replaces, go mod tidy inside test/tools/<tool> only): commit the
# updated go.mod/go.sum afterwards. The Go build cache stays in the default
# GOCACHE, so a rebuild on a warm machine takes seconds; a cold build of all
# tools takes several minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$(cd "$here/../tools" && pwd)
bin="$tools/bin"
# Bump when the build commands below change, so stamps go stale.
build_rev=1

# shellcheck source=../tools/versions.env
source "$tools/versions.env"
: "${ETCD_VERSION:?missing in versions.env}" "${KUBERNETES_VERSION:?missing in versions.env}" "${KWOK_VERSION:?missing in versions.env}"
: "${HELM_VERSION:?missing in versions.env}"
# k8s.io/kubernetes v1.X.Y goes with staging modules v0.X.Y.
kube_staging_version="v0.${KUBERNETES_VERSION#v1.}"

export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export GOTOOLCHAIN=local
# The machine is shared: compile politely.
nice_cmd=(nice -n 10)

log() { printf '[build-tools] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

now() { date +%s; }

# required_version DIR MODULE prints the version of MODULE required by DIR/go.mod.
required_version() {
	awk -v m="$2" '
		($1 == "require" && $2 == m) { print $3; exit }
		($1 == m && $2 ~ /^v/) { print $2; exit }
	' "$1/go.mod"
}

# upstream_gomod MODULE@VERSION prints the path of that module's go.mod in the
# module cache, downloading it if needed.
upstream_gomod() {
	local out
	out=$(go mod download -json "$1") || die "downloading $1 failed: $out"
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$out"
}

# regen_module DIR MODULE VERSION REPLACE_PATTERN REPLACE_VERSION rewrites
# DIR/go.mod to require MODULE@VERSION and to replace every module that
# MODULE's own go.mod replaces with a local path matching REPLACE_PATTERN by
# the same module at REPLACE_VERSION, then tidies DIR.
regen_module() {
	local dir=$1 mod=$2 version=$3 pattern=$4 rversion=$5
	local modpath gomod
	modpath=$(awk '$1 == "module" { print $2; exit }' "$dir/go.mod")
	log "syncing $(basename "$dir") tool module to $mod@$version"
	gomod=$(upstream_gomod "$mod@$version")
	[[ -n $gomod && -f $gomod ]] || die "no go.mod found for $mod@$version"
	{
		printf 'module %s\n\ngo %s\n\nrequire %s %s\n' "$modpath" "$(go env GOVERSION | sed 's/^go//')" "$mod" "$version"
		if [[ -n $pattern ]]; then
			local replaced
			replaced=$(awk -v p="$pattern" '
				/^replace \(/ { inblock = 1; next }
				inblock && /^\)/ { inblock = 0; next }
				inblock && $2 == "=>" && index($3, p) == 1 { print $1 }
				/^replace / && $3 == "=>" && index($4, p) == 1 { print $2 }
			' "$gomod")
			[[ -n $replaced ]] || die "$mod@$version: no replace directives matching $pattern"
			printf '\n// Same modules as the upstream replace directives, at their released versions.\nreplace (\n'
			local m
			for m in $replaced; do
				printf '\t%s => %s %s\n' "$m" "$m" "$rversion"
			done
			printf ')\n'
		fi
	} >"$dir/go.mod.new"
	mv "$dir/go.mod.new" "$dir/go.mod"
	(cd "$dir" && go mod tidy) || die "go mod tidy in $dir failed"
}

# sync_module DIR MODULE VERSION PATTERN RVERSION regenerates DIR's go.mod when
# it does not require MODULE@VERSION yet.
sync_module() {
	local have
	have=$(required_version "$1" "$2")
	if [[ $have != "$3" ]]; then
		regen_module "$@"
	fi
}

# stamp_of DIR EXTRA prints the stamp a tool built from DIR must carry.
stamp_of() {
	{
		echo "build_rev=$build_rev $2"
		go env GOVERSION GOOS GOARCH
		cat "$1/go.mod" "$1/go.sum" 2>/dev/null
	} | sha256sum | cut -d' ' -f1
}

# fresh NAME STAMP BINARIES... succeeds when every binary exists and NAME's
# stamp matches.
fresh() {
	local name=$1 stamp=$2 b
	shift 2
	[[ -f $bin/.stamp-$name && $(cat "$bin/.stamp-$name") == "$stamp" ]] || return 1
	for b in "$@"; do
		[[ -e $bin/$b ]] || return 1
	done
}

# build NAME DIR STAMP LDFLAGS OUTPUT:PACKAGE... builds into a temporary folder
# and moves the binaries into place only when all of them built.
build() {
	local name=$1 dir=$2 stamp=$3 ldflags=$4
	shift 4
	local tmp="$bin/.tmp-$name" start spec out
	rm -rf "$tmp"
	mkdir -p "$tmp"
	start=$(now)
	# One go build for all of a tool's binaries lets the go command share the
	# work on common packages.
	local pkgs=() outs=()
	for spec in "$@"; do
		outs+=("${spec%%:*}")
		pkgs+=("${spec#*:}")
		log "building ${spec%%:*} (${spec#*:})"
	done
	if ((${#pkgs[@]} == 1)); then
		(cd "$dir" && "${nice_cmd[@]}" go build -trimpath -ldflags "$ldflags" -o "$tmp/${outs[0]}" "${pkgs[0]}") ||
			die "building $name failed"
	else
		(cd "$dir" && "${nice_cmd[@]}" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}") ||
			die "building $name failed"
	fi
	for out in "${outs[@]}"; do
		[[ -x $tmp/$out ]] || die "building $name: $out missing after go build"
		mv -f "$tmp/$out" "$bin/$out"
	done
	rm -rf "$tmp"
	echo "$stamp" >"$bin/.stamp-$name"
	log "$name built in $(($(now) - start))s"
}

build_kube() {
	local dir="$tools/kube"
	sync_module "$dir" k8s.io/kubernetes "$KUBERNETES_VERSION" ./staging/ "$kube_staging_version"
	local v=${KUBERNETES_VERSION#v} major minor ld="-s -w" key val
	major=${v%%.*}
	minor=${v#*.}
	minor=${minor%%.*}
	for kv in "gitVersion=$KUBERNETES_VERSION" "gitMajor=$major" "gitMinor=$minor" "gitTreeState=clean"; do
		key=${kv%%=*}
		val=${kv#*=}
		ld+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
	done
	local stamp
	local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl) specs=() c
	for c in "${cmds[@]}"; do
		specs+=("$c:k8s.io/kubernetes/cmd/$c")
	done
	stamp=$(stamp_of "$dir" "$KUBERNETES_VERSION $ld ${cmds[*]}")
	if fresh kube "$stamp" "${cmds[@]}"; then
		log "${cmds[*]} $KUBERNETES_VERSION: up to date"
		return
	fi
	build kube "$dir" "$stamp" "$ld" "${specs[@]}"
}

build_etcd() {
	local dir="$tools/etcd"
	sync_module "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" ../ "$ETCD_VERSION"
	local ld="-s -w" stamp
	stamp=$(stamp_of "$dir" "$ETCD_VERSION $ld")
	if fresh etcd "$stamp" etcd; then
		log "etcd $ETCD_VERSION: up to date"
		return
	fi
	build etcd "$dir" "$stamp" "$ld" etcd:go.etcd.io/etcd/server/v3
}

build_kwok() {
	local dir="$tools/kwok"
	sync_module "$dir" sigs.k8s.io/kwok "$KWOK_VERSION" "" ""
	local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" stamp
	stamp=$(stamp_of "$dir" "$KWOK_VERSION $ld stages")
	if fresh kwok "$stamp" kwok kwok-stages/node-initialize.yaml; then
		log "kwok $KWOK_VERSION: up to date"
		return
	fi
	build kwok "$dir" "$stamp" "$ld" kwok:sigs.k8s.io/kwok/cmd/kwok
	# bed.sh runs kwok with its default node stages (ready at once, heartbeat
	# with a lease) and pod deletion, taken from the same module version.
	local src
	src=$(cd "$dir" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) || die "locating sigs.k8s.io/kwok in the module cache failed"
	rm -rf "$bin/kwok-stages"
	mkdir -p "$bin/kwok-stages"
	cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
		"$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
		"$src/kustomize/stage/pod/fast/pod-delete.yaml" "$bin/kwok-stages/"
	chmod -R u+w "$bin/kwok-stages"
}

build_helm() {
	local dir="$tools/helm"
	sync_module "$dir" helm.sh/helm/v3 "$HELM_VERSION" "" ""
	# As helm's own Makefile: the version it reports, and the Kubernetes
	# version that `helm template` and `helm lint` assume without a cluster
	# (the client-go it is built with, v0.X.Y -> 1.X).
	local kv major minor
	kv=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/client-go) || die "reading helm's client-go version failed"
	kv=${kv#v}
	major=$((${kv%%.*} + 1))
	minor=${kv#*.}
	minor=${minor%%.*}
	local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" p
	for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ld+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
	done
	local stamp
	stamp=$(stamp_of "$dir" "$HELM_VERSION $ld")
	if fresh helm "$stamp" helm; then
		log "helm $HELM_VERSION: up to date"
		return
	fi
	build helm "$dir" "$stamp" "$ld" helm:helm.sh/helm/v3/cmd/helm
}

main() {
	command -v go >/dev/null || die "go is not installed"
	mkdir -p "$bin"
	# One build at a time: CI and a developer may start this concurrently.
	exec 9>"$bin/.lock"
	if ! flock -n 9; then
		log "another build-tools.sh is running; waiting for it"
		flock 9
	fi
	local targets=("$@") t start
	((${#targets[@]})) || targets=(etcd kwok helm kube)
	start=$(now)
	for t in "${targets[@]}"; do
		case $t in
		kube | etcd | kwok | helm) "build_$t" ;;
		*) die "unknown tool $t (want kube, etcd, kwok or helm)" ;;
		esac
	done
	log "tools ready in $bin ($(($(now) - start))s)"
}

main "$@"
