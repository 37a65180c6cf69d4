#!/usr/bin/env bash
# Bring plugin-operator up and show it answering a query: the README's first command.
#
#   hack/up.sh                       this machine, as root: system packages, the local
#                                    single-node cluster (hack/cluster.sh) with NetworkPolicy
#                                    enforcement, our image built and imported
#   hack/up.sh --context NAME        a cluster you already have (or KUBECONFIG=... hack/up.sh):
#                                    nothing is installed on this machine; the nodes must be
#                                    able to run IMAGE (default: what `hack/image.sh ref` prints;
#                                    for hack/kind.sh's cluster, `hack/kind.sh load` is run)
#   IMAGE=REF hack/up.sh             the local cluster with an image built before (in Docker)
#
# Then: the chart installed with Helm (release plugin-operator in namespace plugin-operator,
# plugins in namespace plugins), the two sample plugins packaged, signed with the local test
# key and applied from examples/ with their DataSourceInstances, a wait until they are
# Running and Healthy, and one query through the gateway. Every step is idempotent: a second
# run reuses what is there. Progress goes to stderr (each step with the seconds since the
# start; long builds as "[n/m] building COMPONENT" and a line every 30 s; at the end a table
# of where the time went), the query's result and how to query again to stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

RELEASE=plugin-operator
RELEASE_NS=plugin-operator
PLUGIN_NS=plugins
QUERIER=demo-querier
ARCHIVE_SERVER=plugin-archives
ARCHIVE_PORT=8080
STATE="$CACHE_DIR/up"
LOCAL_LOGS=/var/lib/plugin-operator-cluster/logs

context=""
while [ $# -gt 0 ]; do
  case "$1" in
    --context) context="${2:?--context needs a name}"; shift 2 ;;
    --context=*) context="${1#--context=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: hack/up.sh [--context NAME])" ;;
  esac
done
use_local=1
if [ -n "$context" ] || [ -n "${KUBECONFIG:-}" ]; then use_local=0; fi
# The kubeconfig this script prints for the local cluster means the local cluster.
if [ -z "$context" ] && [ -n "${KUBECONFIG:-}" ] &&
  grep -qx 'current-context: plugin-operator-local' "$KUBECONFIG" 2>/dev/null; then
  use_local=1
fi

started=$SECONDS
steps_init
current_step="starting"
logs_hint="$STATE/logs"
on_exit() { # [STATUS]
  local rc=${1:-$?}
  steps_summary "$rc"
  [ "$rc" -eq 0 ] && return
  if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    printf '\n\033[1;31mFAILED\033[0m while %s (exit %s).\n' "$current_step" "$rc" >&2
  else
    printf '\nFAILED while %s (exit %s).\n' "$current_step" "$rc" >&2
  fi
  printf 'Logs: %s\n' "$logs_hint" >&2
  if declare -F kctl_hint >/dev/null; then
    printf 'Look at: %s -n %s get pods,plugins,datasourceinstances; %s -n %s logs deployment/%s\n' \
      "$(kctl_hint)" "$PLUGIN_NS" "$(kctl_hint)" "$RELEASE_NS" "$RELEASE" >&2
  fi
}
trap on_exit EXIT
# step NAME WHAT: a step of the summary table (NAME), WHAT is what a failure names.
step() { current_step="$2"; step_begin "$1" "$2"; }
mkdir -p "$STATE/logs"
# fresh_log LOG: LOG emptied for the step starting, and named if it fails.
fresh_log() { : >"$1"; logs_hint="$1"; }

# ---- the cluster --------------------------------------------------------------------------
if [ "$use_local" = 1 ]; then
  [ "$(id -u)" -eq 0 ] || die "the local cluster needs root: run 'sudo hack/up.sh', or point at a cluster with --context NAME / KUBECONFIG"
  step "system packages" "checking system packages (hack/install-deps.sh)"
  fresh_log "$STATE/logs/install-deps.log"
  with_heartbeat "checking system packages" into_log "$STATE/logs/install-deps.log" \
    "$HACK_DIR/install-deps.sh"
fi
# hack/python-env.sh reports its own step.
step_end
current_step="preparing the Python environment (.venv)"
fresh_log "$STATE/logs/python-env.log"
# shellcheck disable=SC2094 # both append to the log
run_logged "$STATE/logs/python-env.log" "$HACK_DIR/python-env.sh" >>"$STATE/logs/python-env.log"
# For the local cluster, everything hack/cluster.sh would build too, here where its progress
# shows: "[n/m] building COMPONENT".
components=(kubectl helm)
if [ "$use_local" = 1 ]; then
  components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
    kubectl coredns helm)
fi
step "components" "building ${components[*]}: cached after the first build, which takes ~10 min"
fresh_log "$STATE/logs/build-components.log"
run_logged "$STATE/logs/build-components.log" "$HACK_DIR/build-components.sh" "${components[@]}" >/dev/null
KUBECTL="$K8S_BIN_DIR/kubectl"
HELM="$TOOLS_BIN_DIR/helm"

if [ "$use_local" = 1 ]; then
  step "local cluster" "starting the local cluster with NetworkPolicy enforced (hack/cluster.sh up)"
  fresh_log "$STATE/logs/cluster.log"
  logs_hint="$LOCAL_LOGS (and $STATE/logs/cluster.log)"
  export KUBECONFIG
  KUBECONFIG="$(with_heartbeat "starting the local cluster" \
    run_logged "$STATE/logs/cluster.log" "$HACK_DIR/cluster.sh" up | tail -n1)"
fi
kctl() { "$KUBECTL" ${context:+--context "$context"} "$@"; }
kctl_hint() {
  local prefix=""
  [ "$use_local" = 1 ] && prefix="KUBECONFIG=$KUBECONFIG "
  printf '%s%s%s' "$prefix" "$KUBECTL" "${context:+ --context $context}"
}
helm_() { "$HELM" ${context:+--kube-context "$context"} "$@"; }
logs_hint="$STATE/logs"
step "reaching the cluster" "reaching the cluster"
kctl version >/dev/null 2>"$STATE/logs/kubectl.log" ||
  die "cannot reach the cluster$( [ -n "$context" ] && echo " of context $context"): see $STATE/logs/kubectl.log"

# ---- the image ----------------------------------------------------------------------------
if [ "$use_local" = 1 ] && [ -n "${IMAGE:-}" ]; then
  step "image" "importing image $IMAGE into the node (hack/image.sh import)"
  fresh_log "$STATE/logs/image.log"
  IMAGE="$(run_logged "$STATE/logs/image.log" "$HACK_DIR/image.sh" import | tail -n1)"
  pull_policy=Never
elif [ "$use_local" = 1 ]; then
  step "image" "building our image and importing it into the node (hack/image.sh all)"
  fresh_log "$STATE/logs/image.log"
  IMAGE="$(run_logged "$STATE/logs/image.log" "$HACK_DIR/image.sh" all | tail -n1)"
  pull_policy=Never
elif [ -n "${IMAGE:-}" ]; then
  pull_policy=IfNotPresent
elif [ "$(kctl config current-context)" = kind-plugin-operator ]; then
  step "image" "building our image and loading it into kind (hack/kind.sh load)"
  fresh_log "$STATE/logs/image.log"
  # shellcheck disable=SC2094 # both append to the log
  run_logged "$STATE/logs/image.log" "$HACK_DIR/kind.sh" load >>"$STATE/logs/image.log"
  IMAGE="$("$HACK_DIR/image.sh" ref)"
  pull_policy=IfNotPresent
else
  IMAGE="$("$HACK_DIR/image.sh" ref)"
  pull_policy=IfNotPresent
  log "using image $IMAGE: the nodes must be able to pull it (set IMAGE=registry/repo:tag to change)"
fi
logs_hint="$STATE/logs"
log "image: $IMAGE"

# ---- the sample plugins, packaged and signed ----------------------------------------------
# Signing with the local test key (hack/sign-plugin.sh) makes the samples "private" plugins
# valid for http://localhost:3000/, the chart's default operator.appUrl. An archive is
# re-signed only when its source changes, so a second run changes no ConfigMap.
sign_once() { # ZIP OUTPUT
  local want; want="$(sha256sum < "$1" | cut -c1-64)"
  if [ -s "$2" ] && [ "$(cat "$2.source-sha256" 2>/dev/null)" = "$want" ]; then return; fi
  "$HACK_DIR/sign-plugin.sh" "$1" --output "$2" >>"$STATE/logs/samples.log" 2>&1
  echo "$want" > "$2.source-sha256"
}
step "sample plugins" "packaging and signing the sample plugins (log: $STATE/logs/samples.log)"
fresh_log "$STATE/logs/samples.log"
testdata_zip="$(run_logged "$STATE/logs/samples.log" plugins/testdata-python/package.sh "$STATE/package" |
  tail -n1)"
sign_once "$testdata_zip" "$STATE/testdata-python.signed.zip"
go_zip="$(run_logged "$STATE/logs/samples.log" "$HACK_DIR/build-sample-go.sh" sample-go |
  sed -n 's/^SAMPLE_GO_ZIP=//p')"
[ -s "$go_zip" ] || die "hack/build-sample-go.sh printed no SAMPLE_GO_ZIP; see $STATE/logs/samples.log"
sign_once "$go_zip" "$STATE/sample-go.signed.zip"
public_key="$CACHE_DIR/signing/test-signer.pub.asc"
[ -s "$public_key" ] || die "the signing key's public half $public_key is missing"

# ---- the chart ----------------------------------------------------------------------------
step "CRDs" "applying the CRDs (Helm installs them only once and never upgrades them)"
fresh_log "$STATE/logs/helm.log"
kctl apply --server-side --force-conflicts -f crds/ >"$STATE/logs/helm.log" 2>&1
kctl wait --for=condition=Established --timeout=60s -f crds/ >>"$STATE/logs/helm.log" 2>&1
step "chart" "installing the chart: helm upgrade --install $RELEASE -n $RELEASE_NS (log: $STATE/logs/helm.log)"
install_chart() {
  helm_ upgrade --install "$RELEASE" charts/plugin-operator --namespace "$RELEASE_NS" \
    --create-namespace --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy="$pull_policy" --set "plugins.namespaces={$PLUGIN_NS}" \
    --set-file "operator.trustedKeys.inline.test-signer\.asc=$public_key" \
    --wait --timeout 5m >>"$STATE/logs/helm.log" 2>&1
}
with_heartbeat "installing the chart (helm --wait)" install_chart ||
  { current_step="installing the chart (helm upgrade --install; last lines of its log above)"
    tail -5 "$STATE/logs/helm.log" >&2; kctl -n "$RELEASE_NS" get pods >&2 || true; false; }
logs_hint="$STATE/logs"

# ---- the archives: the Python sample in a ConfigMap, the Go sample (~10 MB, more than a
# ConfigMap may hold) from a small HTTP server pod in the plugin namespace, pinned by sha256.
step "archives" "creating the archive ConfigMap testdata-python-archive"
kctl -n "$PLUGIN_NS" create configmap testdata-python-archive \
  --from-file=plugin.zip="$STATE/testdata-python.signed.zip" --dry-run=client -o yaml |
  kctl -n "$PLUGIN_NS" apply -f - >/dev/null
current_step="serving the Go sample's archive from pod $PLUGIN_NS/$ARCHIVE_SERVER"
log "$current_step"
go_sha="$(sha256sum < "$STATE/sample-go.signed.zip" | cut -c1-64)"
archive_server_manifest() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $ARCHIVE_SERVER
  labels: {app.kubernetes.io/name: $ARCHIVE_SERVER, app.kubernetes.io/part-of: plugin-operator-demo}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: http
      image: $IMAGE
      imagePullPolicy: IfNotPresent
      command: [python3, -m, http.server, "$ARCHIVE_PORT", --directory, /srv]
      ports: [{containerPort: $ARCHIVE_PORT}]
      readinessProbe: {tcpSocket: {port: $ARCHIVE_PORT}, periodSeconds: 2}
      resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 128Mi}}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      volumeMounts: [{name: srv, mountPath: /srv}]
  volumes: [{name: srv, emptyDir: {}}]
YAML
}
# A pod's spec is mostly immutable: one from an earlier, different run is replaced.
if ! archive_server_manifest | kctl -n "$PLUGIN_NS" apply -f - >/dev/null 2>&1; then
  kctl -n "$PLUGIN_NS" delete pod "$ARCHIVE_SERVER" --wait=true --timeout=60s >/dev/null
  archive_server_manifest | kctl -n "$PLUGIN_NS" apply -f - >/dev/null
fi
with_heartbeat "waiting for pod $PLUGIN_NS/$ARCHIVE_SERVER" \
  kctl -n "$PLUGIN_NS" wait --for=condition=Ready "pod/$ARCHIVE_SERVER" --timeout=120s >/dev/null
if [ "$(kctl -n "$PLUGIN_NS" exec "$ARCHIVE_SERVER" -- python3 -c \
  "import hashlib,sys; print(hashlib.sha256(open('/srv/sample-go.zip','rb').read()).hexdigest())" \
  2>/dev/null)" != "$go_sha" ]; then
  kctl -n "$PLUGIN_NS" exec -i "$ARCHIVE_SERVER" -- python3 -c \
    "import os,shutil,sys; shutil.copyfileobj(sys.stdin.buffer, open('/srv/.part','wb')); os.replace('/srv/.part','/srv/sample-go.zip')" \
    < "$STATE/sample-go.signed.zip"
fi
archive_ip="$(kctl -n "$PLUGIN_NS" get pod "$ARCHIVE_SERVER" -o jsonpath='{.status.podIP}')"
go_url="http://$archive_ip:$ARCHIVE_PORT/sample-go.zip"

# ---- the samples from examples/ -----------------------------------------------------------
step "examples" "applying examples/: Plugins testdata-python and sample-go, DataSourceInstances testdata and sample-go"
kctl -n "$PLUGIN_NS" apply -f examples/plugin-testdata-python.yaml \
  -f examples/datasourceinstance-testdata.yaml -f examples/datasourceinstance.yaml >/dev/null
# The same manifest as examples/plugin-sample-go.yaml, its source pointed at the archive pod.
"$REPO_ROOT/.venv/bin/python" - examples/plugin-sample-go.yaml "$go_url" "$go_sha" <<'PY' |
import json, sys, yaml
plugin = yaml.safe_load(open(sys.argv[1]))
plugin["spec"]["source"] = {"url": sys.argv[2], "sha256": sys.argv[3]}
print(json.dumps(plugin))
PY
  kctl -n "$PLUGIN_NS" apply -f - >/dev/null

step "Plugins running" "waiting until the Plugins are Running and the DataSourceInstances Healthy (up to 5 min)"
quiet() { "$@" >/dev/null 2>&1; }
for plugin in testdata-python sample-go; do
  current_step="waiting for Plugin $PLUGIN_NS/$plugin to be Running"
  if ! with_heartbeat "$current_step" quiet kctl -n "$PLUGIN_NS" wait \
      --for=jsonpath='{.status.phase}'=Running "plugin/$plugin" --timeout=300s; then
    kctl -n "$PLUGIN_NS" describe plugin "$plugin" | tail -25 >&2
    false
  fi
done
for dsi in testdata sample-go; do
  current_step="waiting for DataSourceInstance $PLUGIN_NS/$dsi to be Healthy"
  if ! with_heartbeat "$current_step" quiet kctl -n "$PLUGIN_NS" wait \
      --for=jsonpath='{.status.health.status}'=OK "datasourceinstance/$dsi" --timeout=180s; then
    kctl -n "$PLUGIN_NS" get datasourceinstance "$dsi" -o jsonpath='{.status}' >&2; echo >&2
    false
  fi
done
kctl -n "$PLUGIN_NS" get plugins,datasourceinstances >&2

# ---- a query through the gateway ----------------------------------------------------------
step "query" "querying through the gateway (ServiceAccount $PLUGIN_NS/$QUERIER, port-forward to 127.0.0.1)"
kctl -n "$PLUGIN_NS" create serviceaccount "$QUERIER" --dry-run=client -o yaml |
  kctl apply -f - >/dev/null
kctl -n "$PLUGIN_NS" create rolebinding "$QUERIER" --serviceaccount="$PLUGIN_NS:$QUERIER" \
  --clusterrole=plugin-operator-datasource-querier --dry-run=client -o yaml |
  kctl apply -f - >/dev/null
token="$(kctl -n "$PLUGIN_NS" create token "$QUERIER" --duration=1h)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
kctl -n "$RELEASE_NS" port-forward --address 127.0.0.1 "service/$RELEASE-gateway" "$port:80" \
  >"$STATE/logs/port-forward.log" 2>&1 &
forward_pid=$!
stop_forward() { local rc=$?; kill "$forward_pid" 2>/dev/null || true; on_exit "$rc"; }
trap stop_forward EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
query='{"from":"now-5m","to":"now","queries":[{"refId":"A","datasource":{"uid":"testdata"},"scenario":"random_walk","seriesCount":1},{"refId":"B","datasource":{"uid":"sample-go"}}]}'
answer="$STATE/last-query.json"
status="$(curl -s -o "$answer" -w '%{http_code}' --max-time 30 -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' "http://127.0.0.1:$port/api/ds/query" -d "$query")" || true
kill "$forward_pid" 2>/dev/null || true
current_step="querying through the gateway (HTTP $status; answer in $answer)"
[ "$status" = 200 ] || { cat "$answer" >&2 2>/dev/null; echo >&2; false; }

"$REPO_ROOT/.venv/bin/python" - "$answer" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for ref, result in sorted(results.items()):
    for frame in result.get("frames", []):
        fields = frame["schema"]["fields"]
        values = frame["data"]["values"]
        rows = len(values[0]) if values else 0
        names = ", ".join(f["name"] for f in fields)
        print(f"query {ref}: frame {frame['schema'].get('name') or '(unnamed)'!r} with {rows} rows of ({names})")
        for row in range(min(rows, 3)):
            print("   ", ", ".join(str(column[row]) for column in values))
PY

setup="kubectl=\"$KUBECTL${context:+ --context $context}\""
[ -n "${KUBECONFIG:-}" ] && setup="export KUBECONFIG=$KUBECONFIG; $setup"
cat <<MSG

Query again (bash):
  $setup
  \$kubectl -n $RELEASE_NS port-forward service/$RELEASE-gateway 8000:80 >/dev/null &
  TOKEN=\$(\$kubectl -n $PLUGIN_NS create token $QUERIER)
  curl -s -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
    http://127.0.0.1:8000/api/ds/query -d '$query'
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8000/api/datasources/uid/testdata/health
Look around:
  \$kubectl -n $PLUGIN_NS get plugins,datasourceinstances,pods
  \$kubectl -n $RELEASE_NS logs deployment/$RELEASE
MSG
if [ "$use_local" = 1 ]; then
  echo "Stop everything: hack/cluster.sh down (logs: $LOCAL_LOGS)"
fi
step_end
steps_summary
success='SUCCESS'
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then success=$'\033[1;32mSUCCESS\033[0m'; fi
printf '\n%s plugin-operator is up and answered a query through the gateway (%ss).\n' \
  "$success" "$((SECONDS - started))"
