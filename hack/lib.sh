# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# Shared settings for the hack/ scripts. Source it; do not run it.

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

# Everything that is expensive to rebuild lives here, keyed by version,
# so a second run (or CI on the same machine) reuses it.
CACHE_DIR="${PLUGIN_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/plugin-operator}"
K8S_BIN_DIR="$CACHE_DIR/bin/kubernetes-$K8S_VERSION"
ETCD_BIN_DIR="$CACHE_DIR/bin/etcd-$ETCD_VERSION"
TOOLS_BIN_DIR="$CACHE_DIR/bin/tools"

# ---- output -------------------------------------------------------------------------------
# Everything below writes to stderr only: stdout stays each script's answer (a path, an
# image reference) for the callers that capture it. Plain text unless stderr is a terminal.
# A script started inside another's step (PLUGIN_OPERATOR_STEP_DEPTH, exported while a step
# is open) indents its lines, so they sit under that step.
_steps_depth="${PLUGIN_OPERATOR_STEP_DEPTH:-0}"
[[ "$_steps_depth" =~ ^[0-9]{1,2}$ ]] || _steps_depth=0
printf -v _log_indent '%*s' $((2 * _steps_depth)) ''

log() {
  if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    printf '\033[1m[%(%H:%M:%S)T]\033[0m %s%s\n' -1 "$_log_indent" "$*" >&2
  else
    printf '[%(%H:%M:%S)T] %s%s\n' -1 "$_log_indent" "$*" >&2
  fi
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---- steps: what a run did and where its time went ----------------------------------------
# A top-level script (hack/up.sh, hack/test.sh) calls steps_init first and steps_summary
# last. Steps of every script it starts that sources this file, directly or through pytest,
# are appended to the same record: steps.tsv in the per-run directory named by
# PLUGIN_OPERATOR_STEPS_DIR, one line per step (start in microseconds, depth, seconds,
# result, name). A script run on its own prints its steps and records nothing.
#
#   step_begin NAME [MESSAGE]   logs MESSAGE (default NAME) and the seconds since this script
#                               started; numbered "[n/m]" when the script set STEPS_TOTAL=m.
#                               A step still open is ended first.
#   step_cached NAME            a numbered step whose result was already there: "NAME: cached"
#   step_end [RESULT]           records the open step (no-op when none is). RESULT: cached,
#                               built, ok, failed, passed...; by default what the child
#                               scripts recorded meanwhile says: built if one of them built
#                               something, cached if they found everything cached, else ok
#   with_heartbeat WHAT CMD...  runs CMD (a command or function, not a compound one); while it
#                               runs, logs "still WHAT (Ns so far, ...)" every
#                               PLUGIN_OPERATOR_HEARTBEAT seconds (30). Returns CMD's status.
#                               Put CMD's redirections inside CMD (into_log), or the heartbeat
#                               lines go where they go.
#   into_log FILE CMD...        runs CMD with its stdout and stderr appended to FILE
#   run_logged FILE CMD...      runs CMD with its stderr appended to FILE; its log lines (and
#                               "error:" lines) are shown on our stderr too; stdout is ours
#   steps_summary [STATUS]      ends a step still open, as failed if STATUS (default $?, as
#                               in an EXIT trap) is not 0; then the script that started the
#                               record prints the table and removes the record
STEPS_TOTAL=""
_step_name=""
_step_start=0
_step_n=0
_steps_owner=0

_us_now() { # sets _us: microseconds since the epoch
  if [ -n "${EPOCHREALTIME:-}" ]; then
    _us="${EPOCHREALTIME//[!0-9]/}"
  else
    _us="$(date +%s%N)"; _us="${_us%???}"
  fi
}

_steps_file() { [ -n "${PLUGIN_OPERATOR_STEPS_DIR:-}" ] && echo "$PLUGIN_OPERATOR_STEPS_DIR/steps.tsv"; }

_step_record() { # START_US DEPTH SECONDS RESULT NAME
  [ -n "${PLUGIN_OPERATOR_STEPS_DIR:-}" ] || return 0
  { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$PLUGIN_OPERATOR_STEPS_DIR/steps.tsv"; } 2>/dev/null || true
}

_step_prefix() {
  if [ -n "$STEPS_TOTAL" ]; then printf '[%s/%s] ' "$_step_n" "$STEPS_TOTAL"; fi
}

steps_init() {
  if [ -n "${PLUGIN_OPERATOR_STEPS_DIR:-}" ] && [ -d "$PLUGIN_OPERATOR_STEPS_DIR" ]; then
    return 0 # a parent's record: append to it
  fi
  PLUGIN_OPERATOR_STEPS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/plugin-operator-steps.XXXXXX")"
  export PLUGIN_OPERATOR_STEPS_DIR
  _steps_owner=1
  _us_now
  echo "$_us" >"$PLUGIN_OPERATOR_STEPS_DIR/started"
  : >"$PLUGIN_OPERATOR_STEPS_DIR/steps.tsv"
}

step_begin() {
  step_end
  _step_n=$((_step_n + 1))
  _step_name="${1//[$'\t\n']/ }"
  _us_now
  _step_start="$_us"
  log "$(_step_prefix)${2:-$1} (elapsed ${SECONDS}s)"
  export PLUGIN_OPERATOR_STEP_DEPTH=$((_steps_depth + 1))
}

step_cached() {
  step_end
  _step_n=$((_step_n + 1))
  log "$(_step_prefix)$1: cached"
  _us_now
  _step_record "$_us" "$_steps_depth" 0.0 cached "${1//[$'\t\n']/ }"
}

step_end() {
  [ -n "$_step_name" ] || return 0
  local result="${1:-}" us secs file
  _us_now
  us=$((_us - _step_start))
  [ "$us" -ge 0 ] || us=0
  printf -v secs '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
  file="$(_steps_file)" || true
  if [ -z "$result" ] && [ -n "$file" ] && [ -f "$file" ]; then
    result="$(awk -F'\t' -v d=$((_steps_depth + 1)) -v s="$_step_start" '
      $2 == d && $1 >= s { if ($4 == "cached") c = 1; else if ($4 != "ok" && $4 != "failed") b = 1 }
      END { print b ? "built" : c ? "cached" : "ok" }' "$file" 2>/dev/null)" || result=""
  fi
  _step_record "$_step_start" "$_steps_depth" "$secs" "${result:-ok}" "$_step_name"
  _step_name=""
  export PLUGIN_OPERATOR_STEP_DEPTH="$_steps_depth"
}

steps_summary() { # [STATUS]
  local rc=${1:-$?}
  if [ "$rc" -eq 0 ]; then step_end; else step_end failed; fi
  [ "$_steps_owner" = 1 ] || return 0
  _steps_owner=0
  local dir="$PLUGIN_OPERATOR_STEPS_DIR" started total
  _us_now
  started="$(cat "$dir/started" 2>/dev/null)" || started="$_us"
  total=$((_us - started))
  printf -v total '%d.%d' $((total / 1000000)) $((total % 1000000 / 100000))
  if [ -s "$dir/steps.tsv" ]; then
    # Sorted by start, a step's children follow it; the same step run again under the same
    # parent (a cached helper called by many tests) is one row, "(xN)".
    LC_ALL=C sort -t $'\t' -k1,1n -k2,2n "$dir/steps.tsv" | awk -F'\t' -v total="$total" '
      NR == 1 { base = $2 }
      {
        d = $2 - base; if (d < 0) d = 0
        parent = (d > 0) ? path[d - 1] : ""
        key = parent SUBSEP $5
        if (!(key in row)) {
          row[key] = ++n; depth[n] = d; name[n] = $5; secs[n] = 0; count[n] = 0; result[n] = $4
        }
        i = row[key]; secs[i] += $3; count[i]++
        if ($4 == "failed" || result[i] == "failed") result[i] = "failed"
        else if ($4 != "cached" && $4 != "ok") result[i] = $4
        path[d] = key
      }
      END {
        width = 4
        for (i = 1; i <= n; i++) {
          label[i] = sprintf("%*s%s%s", 2 * depth[i], "", name[i], count[i] > 1 ? " (x" count[i] ")" : "")
          if (length(label[i]) > width) width = length(label[i])
        }
        printf "\nwhere the time went (%s s in all):\n", total
        printf "  %-*s  %8s  %s\n", width, "step", "seconds", "result"
        for (i = 1; i <= n; i++) printf "  %-*s  %8.1f  %s\n", width, label[i], secs[i], result[i]
        printf "  %-*s  %8s\n", width, "total", total
      }' >&2
  fi
  rm -rf "$dir"
}

with_heartbeat() {
  local what="$1" rc=0 ticker owner=$BASHPID
  shift
  # Not the lock descriptors (7, 8, 9) of the scripts: the ticker may outlive a killed
  # script by a second. (The owner's pid is taken here: after `&`, BASHPID is the ticker's.)
  _heartbeat "$what" "$owner" </dev/null >/dev/null 7>&- 8>&- 9>&- &
  ticker=$!
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  return "$rc"
}

_heartbeat() { # WHAT OWNER_PID: in the background; ends when killed or when OWNER is gone
  local every="${PLUGIN_OPERATOR_HEARTBEAT:-30}" start=$SECONDS next sleeper=""
  [[ "$every" =~ ^[1-9][0-9]*$ ]] || every=30
  next=$every
  trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM
  while kill -0 "$2" 2>/dev/null; do
    sleep 1 &
    sleeper=$!
    wait "$sleeper" || true
    sleeper=""
    if [ $((SECONDS - start)) -ge "$next" ]; then
      log "$(_step_prefix)still $1 ($((SECONDS - start))s so far, elapsed ${SECONDS}s)"
      next=$((next + every))
    fi
  done
}

into_log() {
  local file="$1"
  shift
  "$@" >>"$file" 2>&1
}

run_logged() {
  local file="$1" rc=0 relay
  shift
  # In braces, so that this shell starts the relay and $! is its pid.
  { "$@"; } 2> >(tee -p -a "$file" |
    { grep --line-buffered -E '^(\[[0-9]{2}:[0-9]{2}:[0-9]{2}\] |error: )' || true; } >&2) || rc=$?
  relay=$!
  # The relay ends when nothing holds CMD's stderr any more: wait a moment for its last
  # lines, so that they come before ours, but never for a daemon that kept it open.
  for _ in $(seq 30); do kill -0 "$relay" 2>/dev/null || break; sleep 0.1; done
  return "$rc"
}
