#!/usr/bin/env bash
# ci-setup.sh prepares a machine (CI or a developer's) for the test bed:
# installs the Debian packages it needs when they are missing (apt-get update
# only then), then builds the tool binaries (test/bed/build-tools.sh; seconds
# on a warm Go build cache). Idempotent; prints how long each part took.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[ci-setup] %s\n' "$*" >&2; }
secs() { echo $(($(date +%s) - $1)); }

t0=$(date +%s)
command -v go >/dev/null || {
	log "error: go is not installed"
	exit 1
}

# command -> Debian package
declare -A packages=(
	[redis-server]=redis-server
	# canary analysis tests (pkg/promote) start and query a real one
	[prometheus]=prometheus
	[redis-sentinel]=redis-sentinel
	[docker-registry]=docker-registry
	[openssl]=openssl
	[curl]=curl
	[setsid]=util-linux
	[flock]=util-linux
	[sha256sum]=coreutils
	[awk]=gawk
	# test/pipelines parses the Jenkinsfiles with Groovy (it brings a JRE).
	[groovy]=groovy
	# test/e2e drives the web UI in headless Chromium (chromedp).
	[chromium]=chromium
)
missing=()
for cmd in "${!packages[@]}"; do
	if ! command -v "$cmd" >/dev/null; then
		pkg=${packages[$cmd]}
		[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
	fi
done

if ((${#missing[@]})); then
	t=$(date +%s)
	log "installing ${missing[*]}"
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	# Keep package scripts from starting services (redis on :6379, the
	# sentinel on :26379, the registry on :5000): the bed and the tests
	# start their own on free loopback ports.
	policy=/usr/sbin/policy-rc.d
	created_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		created_policy=1
	fi
	status=0
	"${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
	[[ -z $created_policy ]] || "${sudo[@]}" rm -f "$policy"
	if ((status != 0)); then
		log "error: apt-get install ${missing[*]} failed (exit $status)"
		exit "$status"
	fi
	log "packages installed in $(secs "$t")s"
else
	log "packages: all present"
fi

t=$(date +%s)
"$here/build-tools.sh"
log "tools ready in $(secs "$t")s"
log "done in $(secs "$t0")s"
