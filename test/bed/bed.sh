#!/usr/bin/env bash
# bed.sh runs ferry's local test bed on loopback: a real Kubernetes control
# plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) whose
# ECI-like virtual nodes are simulated by kwok, plus redis-server and a
# Distribution registry (Debian's docker-registry).
#
#   test/bed/bed.sh up      start everything (idempotent: a healthy bed is kept)
#   test/bed/bed.sh down    stop exactly the processes `up` started
#   test/bed/bed.sh status  show what runs; exit 1 unless everything is healthy
#   test/bed/bed.sh env     print the bed's settings as `export KEY=VALUE`
#
# Binaries come from test/bed/build-tools.sh (make testbed-tools). State,
# logs and the env file that tests read go to test/.bed/ (TESTBED_DIR
# overrides). Pod start-up delay on the virtual nodes: TESTBED_POD_START_DELAY_MS
# (default 1000) plus a random share up to TESTBED_POD_START_JITTER_MS
# (default 2000); a pod's testbed.ferry.dev/start-delay annotation overrides.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${TESTBED_DIR:-$repo/test/.bed}
bin=${TESTBED_TOOLS_BIN:-$repo/test/tools/bin}
logs=$state/logs
run=$state/run
pki=$state/pki
envfile=$state/env

# Start order; down stops in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok redis registry)
kube_tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)
ferry_namespace=ferry
start_timeout=${TESTBED_START_TIMEOUT:-120}

log() { printf '[bed] %s\n' "$*" >&2; }
die() {
	printf '[bed] error: %s\n' "$*" >&2
	exit 1
}
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- processes

pidfile() { echo "$run/$1.pid"; }

# running NAME succeeds when NAME's recorded process is alive and is still the
# binary that was started (guards against a reused PID).
running() {
	local pf exe pid
	pf=$(pidfile "$1")
	[[ -f $pf ]] || return 1
	read -r pid exe <"$pf" || return 1
	[[ -n $pid && -d /proc/$pid ]] || return 1
	[[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$exe" ]]
}

# start NAME BINARY ARGS... starts BINARY detached, logging to logs/NAME.log.
start() {
	local name=$1 binary=$2
	shift 2
	local exe
	binary=$(command -v "$binary") || die "$name: $binary not found"
	exe=$(readlink -f "$binary")
	# setsid puts the process in its own session, so it outlives this script
	# and a Ctrl-C in the terminal that ran it.
	# 8>&-: the lock taken by `up` must not be inherited.
	setsid "$binary" "$@" </dev/null >"$logs/$name.log" 2>&1 8>&- &
	echo "$! $exe" >"$(pidfile "$name")"
}

# fail NAME MESSAGE names the component and shows the tail of its log.
fail() {
	local name=$1 msg=$2
	{
		printf '[bed] error: %s: %s\n' "$name" "$msg"
		if [[ -s $logs/$name.log ]]; then
			printf '[bed] last lines of %s:\n' "$logs/$name.log"
			tail -n 25 "$logs/$name.log" | sed 's/^/    /'
		fi
	} >&2
	exit 1
}

# wait_for NAME TIMEOUT_S CHECK... polls CHECK until it succeeds, failing
# early when NAME's process has exited.
wait_for() {
	local name=$1 timeout=$2
	shift 2
	local deadline=$(($(date +%s) + timeout))
	while true; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		running "$name" || fail "$name" "exited while starting"
		(($(date +%s) < deadline)) || fail "$name" "not ready after ${timeout}s"
		sleep 0.3
	done
}

# stop NAME... sends SIGTERM to each recorded process that is still the one
# started, waits up to 15 s for all of them, then kills what is left.
stop() {
	local name pid exe i pids=() names=()
	for name in "$@"; do
		[[ -f $(pidfile "$name") ]] || continue
		if running "$name"; then
			read -r pid exe <"$(pidfile "$name")"
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
			names+=("$name")
		else
			rm -f "$(pidfile "$name")"
		fi
	done
	for ((i = 0; i < ${#pids[@]}; i++)); do
		wait_gone "${pids[i]}" 150 || {
			log "${names[i]} (pid ${pids[i]}) ignored SIGTERM for 15s; killing it"
			kill -KILL "${pids[i]}" 2>/dev/null || true
			wait_gone "${pids[i]}" 50 || log "${names[i]} (pid ${pids[i]}) survived SIGKILL"
		}
		log "stopped ${names[i]} (pid ${pids[i]})"
		rm -f "$(pidfile "${names[i]}")"
	done
}

# wait_gone PID TENTHS waits up to TENTHS tenths of a second for PID to end.
wait_gone() {
	local i
	for ((i = 0; i < $2; i++)); do
		[[ -d /proc/$1 ]] || return 0
		sleep 0.1
	done
	[[ ! -d /proc/$1 ]]
}

# stop_all stops the Kubernetes clients first (so they do not log errors
# about a vanished apiserver), then the rest.
stop_all() {
	stop kwok kube-scheduler kube-controller-manager redis registry
	stop kube-apiserver
	stop etcd
}

# ---------------------------------------------------------------- helpers

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

picked_ports=" "
# pick_port prints a free loopback port below the ephemeral range.
pick_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $picked_ports == *" $p "* ]] && continue
		if port_free "$p"; then
			picked_ports+="$p "
			echo "$p"
			return
		fi
	done
	die "no free loopback port found"
}

random_token() { openssl rand -hex 24; }

# env_get KEY prints KEY's value from the env file.
env_get() { sed -n "s/^$1=//p" "$envfile" 2>/dev/null | head -n1; }

kubectl_admin() { "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }

apiserver_ready() {
	[[ $(curl -sS --max-time 3 --cacert "$pki/ca.crt" "https://127.0.0.1:$1/readyz") == ok ]]
}
healthz_ok() { [[ $(curl -sSk --max-time 3 "https://127.0.0.1:$1/healthz") == ok ]]; }
http_ok() { curl -fsS --max-time 3 -o /dev/null "$1"; }
redis_ping() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'PING\r\n' >&3
	IFS= read -r -t 3 reply <&3 || reply=
	exec 3>&- 3<&-
	[[ $reply == +PONG* ]]
}

write_kubeconfig() {
	local file=$1 user=$2 token=$3
	cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ferry-testbed
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: ferry-testbed-$user
  context:
    cluster: ferry-testbed
    user: $user
    namespace: default
current-context: ferry-testbed-$user
EOF
	chmod 600 "$file"
}

check_prerequisites() {
	local missing=() t
	for t in "${kube_tools[@]}"; do
		[[ -x $bin/$t ]] || missing+=("$bin/$t")
	done
	((${#missing[@]} == 0)) || die "missing ${missing[*]}: run make testbed-tools (test/bed/build-tools.sh)"
	for t in redis-server docker-registry openssl curl setsid; do
		command -v "$t" >/dev/null || missing+=("$t")
	done
	((${#missing[@]} == 0)) || die "missing ${missing[*]} on PATH: run test/bed/ci-setup.sh (apt-get install redis-server docker-registry openssl curl)"
}

# healthy succeeds when every component runs and answers.
healthy() {
	local c
	[[ -f $envfile ]] || return 1
	for c in "${components[@]}"; do
		running "$c" || return 1
	done
	apiserver_ready "$(env_get KUBE_APISERVER_PORT)" &&
		redis_ping "$(env_get REDIS_PORT)" &&
		http_ok "http://$(env_get REGISTRY_ADDR)/v2/"
}

# ---------------------------------------------------------------- up

# make_serving_cert makes the cluster CA and the apiserver's serving
# certificate (for 127.0.0.1, localhost and the in-cluster names). The CA is
# what kubeconfigs trust and what the controller manager publishes as
# kube-root-ca.crt.
make_serving_cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ferry-testbed-ca \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
		-keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
	printf '%s\n' \
		"basicConstraints=CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth" \
		"subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
		>"$pki/apiserver.ext"
	openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
	chmod 600 "$pki/ca.key" "$pki/apiserver.key"
}

kwok_config() {
	local stages delay=${TESTBED_POD_START_DELAY_MS:-1000} jitter=${TESTBED_POD_START_JITTER_MS:-2000} f
	[[ $delay =~ ^[0-9]+$ && $jitter =~ ^[0-9]+$ ]] || die "TESTBED_POD_START_DELAY_MS and TESTBED_POD_START_JITTER_MS must be milliseconds"
	stages="$bin/kwok-stages"
	[[ -d $stages ]] || die "missing $stages (kwok's default stages): run make testbed-tools"
	# kwok's own node stages and pod deletion, then the bed's pod stages.
	for f in "$stages/node-initialize.yaml" "$stages/node-heartbeat-with-lease.yaml" "$stages/pod-delete.yaml" "$here"/kwok/*.yaml; do
		[[ -f $f ]] || die "missing kwok stage file $f"
		echo "---"
		sed -e "s/^\( *durationMilliseconds:\) [0-9]* # start-delay-ms\$/\1 $delay/" \
			-e "s/^\( *jitterDurationMilliseconds:\) [0-9]* # start-jitter-ms\$/\1 $jitter/" "$f"
	done
}

up() {
	check_prerequisites
	if healthy; then
		log "the test bed is already up"
		summary
		return
	fi
	local t0
	t0=$(now_ms)
	# Whatever is left of an earlier bed goes; a fresh bed starts empty.
	if compgen -G "$run/*.pid" >/dev/null; then
		log "the test bed is not healthy; stopping what is left of it and starting afresh"
	fi
	stop_all
	rm -rf "$state/etcd" "$state/redis" "$state/registry" "$state/kwok" "$pki" "$envfile" "$state"/*.kubeconfig "$state/tokens.csv"
	mkdir -p "$logs" "$run" "$pki/controller-manager" "$pki/scheduler" "$state/etcd" "$state/redis" "$state/registry/data" "$state/kwok"
	chmod 700 "$state" "$state/etcd"
	# If anything below fails, stop what was started: no half-up bed.
	trap 'rc=$?; if ((rc != 0)); then log "up failed; stopping what was started (logs stay in $logs)"; stop_all; fi' EXIT

	etcd_port=$(pick_port)
	etcd_peer_port=$(pick_port)
	apiserver_port=$(pick_port)
	cm_port=$(pick_port)
	scheduler_port=$(pick_port)
	kwok_port=$(pick_port)
	redis_port=$(pick_port)
	registry_port=$(pick_port)

	openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
	openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	make_serving_cert
	# A client CA: nobody authenticates with it (tokens do), but with it (as
	# client and request-header CA) the apiserver publishes a complete
	# kube-system/extension-apiserver-authentication, which the controller
	# manager and scheduler read for their own serving.
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ferry-testbed-client-ca \
		-keyout "$pki/client-ca.key" -out "$pki/client-ca.crt" 2>/dev/null
	admin_token=$(random_token)
	ferry_token=$(random_token)
	cm_token=$(random_token)
	scheduler_token=$(random_token)
	kwok_token=$(random_token)
	cat >"$state/tokens.csv" <<EOF
$admin_token,testbed-admin,testbed-admin,"system:masters"
$ferry_token,ferry,ferry
$cm_token,system:kube-controller-manager,system:kube-controller-manager
$scheduler_token,system:kube-scheduler,system:kube-scheduler
$kwok_token,kwok,kwok,"system:masters"
EOF
	chmod 600 "$state/tokens.csv" "$pki/sa.key" "$pki/client-ca.key"

	log "starting etcd on 127.0.0.1:$etcd_port"
	start etcd "$bin/etcd" \
		--name=testbed \
		--data-dir="$state/etcd" \
		--listen-client-urls="http://127.0.0.1:$etcd_port" \
		--advertise-client-urls="http://127.0.0.1:$etcd_port" \
		--listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
		--initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster="testbed=http://127.0.0.1:$etcd_peer_port" \
		--unsafe-no-fsync
	# redis and the registry are independent of Kubernetes: start them now.
	log "starting redis-server on 127.0.0.1:$redis_port"
	start redis redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$state/redis" \
		--save "" --appendonly yes --daemonize no --protected-mode yes
	cat >"$state/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $state/registry/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$registry_port
  headers:
    X-Content-Type-Options: [nosniff]
EOF
	log "starting docker-registry on 127.0.0.1:$registry_port"
	start registry docker-registry serve "$state/registry/config.yml"
	wait_for etcd "$start_timeout" http_ok "http://127.0.0.1:$etcd_port/health"

	log "starting kube-apiserver on https://127.0.0.1:$apiserver_port"
	start kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$etcd_port" \
		--bind-address=127.0.0.1 \
		--advertise-address=127.0.0.1 \
		--secure-port="$apiserver_port" \
		--tls-cert-file="$pki/apiserver.crt" \
		--tls-private-key-file="$pki/apiserver.key" \
		--service-cluster-ip-range=10.96.0.0/16 \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--token-auth-file="$state/tokens.csv" \
		--client-ca-file="$pki/client-ca.crt" \
		--requestheader-client-ca-file="$pki/client-ca.crt" \
		--requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User \
		--requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--authorization-mode=RBAC \
		--endpoint-reconciler-type=none \
		--allow-privileged=true \
		--profiling=false
	wait_for kube-apiserver "$start_timeout" apiserver_ready "$apiserver_port"

	write_kubeconfig "$state/admin.kubeconfig" testbed-admin "$admin_token"
	write_kubeconfig "$state/ferry.kubeconfig" ferry "$ferry_token"
	write_kubeconfig "$state/controller-manager.kubeconfig" system:kube-controller-manager "$cm_token"
	write_kubeconfig "$state/scheduler.kubeconfig" system:kube-scheduler "$scheduler_token"
	write_kubeconfig "$state/kwok.kubeconfig" kwok "$kwok_token"

	log "starting kube-controller-manager, kube-scheduler and kwok"
	start kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig="$state/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$state/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$state/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$cm_port" \
		--cert-dir="$pki/controller-manager" \
		--service-account-private-key-file="$pki/sa.key" \
		--root-ca-file="$pki/ca.crt" \
		--use-service-account-credentials=true \
		--controllers='*,-node-ipam-controller' \
		--cluster-name=ferry-testbed \
		--leader-elect=false \
		--profiling=false
	start kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig="$state/scheduler.kubeconfig" \
		--authentication-kubeconfig="$state/scheduler.kubeconfig" \
		--authorization-kubeconfig="$state/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$scheduler_port" \
		--cert-dir="$pki/scheduler" \
		--leader-elect=false \
		--profiling=false
	kwok_config >"$state/kwok/kwok.yaml"
	start kwok "$bin/kwok" \
		--kubeconfig="$state/kwok.kubeconfig" \
		--config="$state/kwok/kwok.yaml" \
		--manage-nodes-with-label-selector=type=virtual-kubelet \
		--server-address="127.0.0.1:$kwok_port" \
		--node-ip=127.0.0.1 \
		--node-port="$kwok_port" \
		--cidr=127.128.0.0/16 \
		--node-lease-duration-seconds=40
	wait_for kube-controller-manager "$start_timeout" healthz_ok "$cm_port"
	wait_for kube-scheduler "$start_timeout" healthz_ok "$scheduler_port"
	wait_for kwok "$start_timeout" http_ok "http://127.0.0.1:$kwok_port/healthz"
	wait_for redis "$start_timeout" redis_ping "$redis_port"
	wait_for registry "$start_timeout" http_ok "http://127.0.0.1:$registry_port/v2/"

	log "creating the ferry identity's RBAC and the virtual nodes"
	kubectl_admin apply -f "$here/rbac-ferry.yaml" -f "$here/virtual-nodes.yaml" >"$logs/kubectl-apply.log" 2>&1 ||
		fail kubectl-apply "kubectl apply of rbac-ferry.yaml and virtual-nodes.yaml failed"
	wait_for kwok "$start_timeout" nodes_ready
	wait_for kube-controller-manager "$start_timeout" service_accounts_ready

	write_env
	trap - EXIT
	local ms=$(($(now_ms) - t0))
	log "up in $((ms / 1000)).$((ms % 1000 / 100))s"
	summary
}

# nodes_ready succeeds when every virtual node is Ready and schedulable (the
# node-lifecycle controller has removed the not-ready taint).
nodes_ready() {
	local out
	out=$(kubectl_admin get nodes -l type=virtual-kubelet \
		-o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints[*].key}{"\n"}{end}') || return 1
	[[ $(grep -c . <<<"$out") -ge 2 ]] || return 1
	! grep -qv ' True virtual-kubelet.io/provider$' <<<"$out"
}

service_accounts_ready() {
	kubectl_admin -n default get serviceaccount default &&
		kubectl_admin -n "$ferry_namespace" get serviceaccount default
}

write_env() {
	local nodes zones
	nodes=$(kubectl_admin get nodes -l type=virtual-kubelet -o jsonpath='{.items[*].metadata.name}' | tr ' ' ',')
	zones=$(kubectl_admin get nodes -l type=virtual-kubelet -o jsonpath='{.items[*].metadata.labels.topology\.kubernetes\.io/zone}' | tr ' ' ',')
	local version
	version=$(sed -n 's/^KUBERNETES_VERSION=//p' "$repo/test/tools/versions.env")
	cat >"$envfile.tmp" <<EOF
# ferry test bed, written by test/bed/bed.sh up at $(date -u +%Y-%m-%dT%H:%M:%SZ).
# KEY=VALUE lines, no quoting; read by test/testbed (FERRY_TESTBED_ENV
# overrides the path). In a shell: eval "\$(test/bed/bed.sh env)".
TESTBED_DIR=$state
TESTBED_LOG_DIR=$logs
TESTBED_TOOLS_BIN=$bin
KUBERNETES_VERSION=$version
KUBECONFIG=$state/admin.kubeconfig
KUBECONFIG_ADMIN=$state/admin.kubeconfig
KUBECONFIG_FERRY=$state/ferry.kubeconfig
KUBE_APISERVER_URL=https://127.0.0.1:$apiserver_port
KUBE_APISERVER_PORT=$apiserver_port
KUBE_CA_FILE=$pki/ca.crt
KUBE_ADMIN_USER=testbed-admin
KUBE_ADMIN_TOKEN=$admin_token
KUBE_FERRY_USER=ferry
KUBE_FERRY_TOKEN=$ferry_token
FERRY_NAMESPACE=$ferry_namespace
VIRTUAL_NODES=$nodes
VIRTUAL_NODE_ZONES=$zones
ETCD_ENDPOINT=http://127.0.0.1:$etcd_port
KWOK_ADDR=127.0.0.1:$kwok_port
REDIS_ADDR=127.0.0.1:$redis_port
REDIS_PORT=$redis_port
REDIS_URL=redis://127.0.0.1:$redis_port/0
REGISTRY_ADDR=127.0.0.1:$registry_port
REGISTRY_URL=http://127.0.0.1:$registry_port
EOF
	chmod 600 "$envfile.tmp"
	mv "$envfile.tmp" "$envfile"
}

summary() {
	local rel=${state#"$repo"/}
	cat <<EOF
ferry test bed is up:
  Kubernetes $(env_get KUBERNETES_VERSION)  $(env_get KUBE_APISERVER_URL)   virtual nodes: $(env_get VIRTUAL_NODES)
  Redis              $(env_get REDIS_ADDR)
  Registry           $(env_get REGISTRY_URL)
  env file           $rel/env   (tests read it; FERRY_TESTBED_ENV overrides)
  logs               $rel/logs/
kubectl (admin; ferry's identity is in $(env_get KUBECONFIG_FERRY)):
  export KUBECONFIG=$(env_get KUBECONFIG_ADMIN) PATH=$bin:\$PATH
every setting in this shell:  eval "\$(test/bed/bed.sh env)"
stop:  make testbed-down   (or test/bed/bed.sh down)
EOF
}

# ---------------------------------------------------------------- commands

down() {
	stop_all
	rm -f "$envfile"
	log "the test bed is down (logs stay in $logs)"
}

status() {
	local c ok=0 pid exe
	for c in "${components[@]}"; do
		if running "$c"; then
			read -r pid exe <"$(pidfile "$c")"
			printf '  %-24s running (pid %s)\n' "$c" "$pid"
		else
			printf '  %-24s not running\n' "$c"
			ok=1
		fi
	done
	if ((ok == 0)) && healthy; then
		summary
		return 0
	fi
	if [[ -f $envfile ]]; then
		echo "the test bed is not healthy: see $logs/, then run make testbed-up"
	else
		echo "the test bed is down: run make testbed-up"
	fi
	return 1
}

print_env() {
	[[ -f $envfile ]] || die "the test bed is down ($envfile missing): run make testbed-up"
	grep -E '^[A-Z_][A-Z0-9_]*=' "$envfile" | sed 's/^/export /'
}

# lock serializes up and down: two at once in one checkout would start two
# beds over one state folder.
lock() {
	mkdir -p "$state"
	exec 8>"$state/.lock"
	if ! flock -n 8; then
		log "another bed.sh up/down is running here; waiting for it"
		flock 8
	fi
}

case ${1:-} in
up)
	lock
	up
	;;
down)
	lock
	down
	;;
status) status ;;
env) print_env ;;
*)
	echo "usage: $0 up|down|status|env" >&2
	exit 2
	;;
esac
