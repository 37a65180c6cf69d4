"""hack/lib.sh's progress helpers: numbered steps, heartbeats, the summary table.

The scripts here source the real hack/lib.sh (and run the real hack/build-components.sh with
a fake `go`), so what they print is what hack/up.sh and hack/test.sh print.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HACK = REPO / "hack"
LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<text>.*)$")
ROW = re.compile(r"^  (?P<name>.*?)\s+(?P<seconds>\d+\.\d)  (?P<result>\S.*)$")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a script run on its own: none of an enclosing hack/test.sh's record
    (this file runs under it), its own cache and temporary directories."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("PLUGIN_OPERATOR_") and k != "NO_COLOR"}
    (tmp_path / "tmp").mkdir()
    clean.update(PLUGIN_OPERATOR_CACHE=str(tmp_path / "cache"), TMPDIR=str(tmp_path / "tmp"))
    return clean


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f'#!/usr/bin/env bash\nset -euo pipefail\nsource "{HACK}/lib.sh"\n{body}')
    path.chmod(0o755)
    return path


def run(path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(path), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def lines(stderr: str) -> list[str]:
    """The log lines, without their time of day."""
    return [m["text"] for m in map(LINE.match, stderr.splitlines()) if m]


def table(stderr: str) -> dict[str, tuple[float, str]]:
    """The summary table's rows: name (indented as printed) -> (seconds, result)."""
    text = stderr.split("where the time went", 1)
    assert len(text) == 2, f"no summary table in:\n{stderr}"
    rows = text[1].splitlines()[1:]
    assert rows[0].split() == ["step", "seconds", "result"], rows
    parsed = {}
    for row in rows[1:]:
        if row.split()[0] == "total":
            break
        m = ROW.match(row)
        assert m, f"not a table row: {row!r}"
        parsed[m["name"]] = (float(m["seconds"]), m["result"])
    return parsed


TWO_STEPS = """
steps_init
trap steps_summary EXIT
STEPS_TOTAL=2
step_begin one "building one"
sleep 0.3
step_end built
step_cached two
echo "the answer"
"""


def test_numbered_steps_and_a_summary_table(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(script(tmp_path, "two.sh", TWO_STEPS), env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the answer\n"  # progress never reaches stdout
    assert re.fullmatch(r"\[1/2\] building one \(elapsed \d+s\)", lines(result.stderr)[0])
    assert lines(result.stderr)[1] == "[2/2] two: cached"
    rows = table(result.stderr)
    assert list(rows) == ["one", "two"]
    assert rows["one"][1] == "built"
    assert 0.3 <= rows["one"][0] < 5
    assert rows["two"] == (0.0, "cached")
    assert re.search(r"^  total\s+\d+\.\d$", result.stderr, re.MULTILINE)
    assert "\x1b" not in result.stderr  # stderr is a pipe: plain text
    assert list((tmp_path / "tmp").iterdir()) == []  # the record is removed


def test_a_child_script_reports_under_the_parent_step(tmp_path: Path, env: dict[str, str]) -> None:
    child = script(tmp_path, "child.sh", """
trap 'step_end failed' EXIT
STEPS_TOTAL=2
step_begin one "building one"
step_end built
step_cached two
echo "/child/answer"
""")
    log = tmp_path / "child.log"
    parent = script(tmp_path, "parent.sh", f"""
steps_init
trap steps_summary EXIT
step_begin prepare "preparing"
step_end
step_begin children "running the child twice"
answer="$(run_logged {log} {child})"
{child} >/dev/null
echo "child answered $answer"
step_begin quiet
""")
    result = run(parent, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child answered /child/answer\n"
    # The child's lines, indented under the step; the first run's relayed by run_logged.
    assert [line for line in lines(result.stderr) if line.startswith("  ")] == [
        "  [1/2] building one (elapsed 0s)", "  [2/2] two: cached"] * 2
    assert "  [2/2] two: cached" in log.read_text()
    rows = table(result.stderr)
    assert list(rows) == ["prepare", "children", "  one (x2)", "  two (x2)", "quiet"]
    assert rows["prepare"][1] == "ok"
    assert rows["children"][1] == "built"  # a child built something
    assert rows["  one (x2)"][1] == "built"
    assert rows["  two (x2)"][1] == "cached"
    assert rows["quiet"][1] == "ok"  # ended by steps_summary on success


def test_a_parent_step_whose_children_found_everything_cached_is_cached(
    tmp_path: Path, env: dict[str, str]
) -> None:
    child = script(tmp_path, "child.sh", "step_cached a\nstep_cached b\n")
    parent = script(tmp_path, "parent.sh", f"""
steps_init
trap steps_summary EXIT
step_begin build
{child}
step_end
""")
    rows = table(run(parent, env).stderr)
    assert rows["build"][1] == "cached"
    assert rows["  a"] == (0.0, "cached")


def test_a_failing_step_is_in_the_table_and_the_exit_code_kept(
    tmp_path: Path, env: dict[str, str]
) -> None:
    child = script(tmp_path, "child.sh", """
trap 'step_end failed' EXIT
step_begin compile "compiling"
exit 3
""")
    parent = script(tmp_path, "parent.sh", f"""
steps_init
trap steps_summary EXIT
step_begin fine
step_begin build "building"
{child}
echo "not reached"
""")
    result = run(parent, env)
    assert result.returncode == 3
    assert "not reached" not in result.stdout
    rows = table(result.stderr)
    assert rows["fine"][1] == "ok"
    assert rows["build"][1] == "failed"
    assert rows["  compile"][1] == "failed"


def processes_marked(mark: str) -> dict[int, list[str]]:
    """pid -> command line of the processes whose environment carries MARK."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"HEARTBEAT_TEST_MARK={mark}".encode() in environ and cmdline != [b""]:
            found[int(proc.name)] = [arg.decode() for arg in cmdline if arg]
    return found


def wait_until_gone(
    mark: str, keep: list[str] | None = None, seconds: float = 5
) -> list[list[str]]:
    """The marked processes still there after SECONDS, but KEEP's."""
    deadline = time.monotonic() + seconds
    while True:
        left = [cmd for cmd in processes_marked(mark).values() if cmd != keep]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture
def mark(env: dict[str, str]) -> Iterator[str]:
    """A mark in the environment of a script and everything it starts."""
    value = uuid.uuid4().hex
    env["HEARTBEAT_TEST_MARK"] = value
    yield value
    for pid in processes_marked(value):  # a command a test left running on purpose
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_a_long_command_gets_a_heartbeat_and_its_ticker_ends_with_it(
    tmp_path: Path, env: dict[str, str], mark: str
) -> None:
    env["PLUGIN_OPERATOR_HEARTBEAT"] = "1"
    path = script(tmp_path, "beat.sh", """
STEPS_TOTAL=1
step_begin slow "building slow"
with_heartbeat "building slow" sleep 2.5
status=0
with_heartbeat "failing" bash -c 'exit 7' || status=$?
echo "status $status"
with_heartbeat "failing under set -e" false
echo "not reached"
""")
    result = run(path, env)
    assert result.returncode == 1  # false's status, through set -e
    assert result.stdout == "status 7\n"
    beats = [line for line in lines(result.stderr) if "still" in line]
    assert beats, result.stderr
    assert all(re.fullmatch(r"\[1/1\] still building slow \(\d+s so far, elapsed \d+s\)", b)
               for b in beats), beats
    assert len(beats) <= 3
    assert wait_until_gone(mark) == []


def test_the_ticker_ends_when_its_script_is_killed(
    tmp_path: Path, env: dict[str, str], mark: str
) -> None:
    env["PLUGIN_OPERATOR_HEARTBEAT"] = "1"
    path = script(tmp_path, "killed.sh", 'echo started\nwith_heartbeat "waiting" sleep 60\n')
    proc = subprocess.Popen([str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    deadline = time.monotonic() + 10
    while len(processes_marked(mark)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(processes_marked(mark)) >= 3  # the script, its ticker, the command
    proc.kill()
    proc.wait()
    # What is left is the command itself (an orphan, as without a heartbeat): no ticker.
    assert wait_until_gone(mark, keep=["sleep", "60"]) == []


def test_log_lines_are_bold_only_on_a_terminal(tmp_path: Path, env: dict[str, str]) -> None:
    path = script(tmp_path, "log.sh", 'log "hello"\n')
    assert run(path, env).stderr.endswith("] hello\n")
    primary, secondary = pty.openpty()
    try:
        subprocess.run([str(path)], stderr=secondary, env=env, timeout=30, check=True)
        out = os.read(primary, 4096).decode()
    finally:
        os.close(primary)
        os.close(secondary)
    assert "\x1b[1m[" in out
    assert out.rstrip().endswith("hello")


FAKE_GO = r"""#!/usr/bin/env bash
# A stand-in for go: records its arguments and "builds" empty executables.
echo "$*" >> "$FAKE_GO_LOG"
case "$1 $2" in
  "mod download") printf 'module k8s.io/kubernetes\n' > "$FAKE_GO_DIR/upstream.mod"
                  echo "{\"GoMod\": \"$FAKE_GO_DIR/upstream.mod\"}"; exit 0 ;;
  "mod edit") echo '{"Replace": [{"Old": {"Path": "k8s.io/api"},
                 "New": {"Path": "./staging/src/k8s.io/api"}}]}'; exit 0 ;;
esac
out="" last=""
for arg in "$@"; do [ "$last" = -o ] && out="$arg"; last="$arg"; done
name="${last%@*}"; name="${name##*/}"
[ "$1" = install ] && out="$GOBIN/$name"
[ "$name" = "${FAKE_GO_FAIL:-}" ] && { echo "fake go: cannot build $name" >&2; exit 2; }
sleep "${FAKE_GO_SLEEP:-0}"
printf '#!/bin/sh\n' > "$out"; chmod +x "$out"
"""


@pytest.fixture
def fake_go(tmp_path: Path, env: dict[str, str]) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    log = tmp_path / "go.log"
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_GO_LOG=str(log), FAKE_GO_DIR=str(tmp_path))
    return log


def versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (HACK / "versions.env").read_text().splitlines()
             if re.match(r"^[A-Z0-9_]+=", line))
    return {k: v.strip().strip('"') for k, v in pairs}


def test_build_components_counts_components_and_says_cached(
    tmp_path: Path, env: dict[str, str], fake_go: Path
) -> None:
    v = versions()
    cache = Path(env["PLUGIN_OPERATOR_CACHE"])
    k8s_dir = cache / "bin" / f"kubernetes-{v['K8S_VERSION']}"
    etcd_dir = cache / "bin" / f"etcd-{v['ETCD_VERSION']}"
    tools_dir = cache / "bin" / "tools"
    build = HACK / "build-components.sh"
    env.update(PLUGIN_OPERATOR_HEARTBEAT="1", FAKE_GO_SLEEP="1.6")

    first = run(build, env, "etcd", "kubectl", "helm", "kube-apiserver")
    assert first.returncode == 0, first.stderr
    # stdout is what callers read, as before: a directory per requested binary.
    assert first.stdout.splitlines() == [str(etcd_dir), str(tools_dir), str(k8s_dir)]
    progress = [line for line in lines(first.stderr) if line.startswith("[")]
    started = [line for line in progress if "still" not in line]
    assert [re.sub(r"\(elapsed \d+s\)", "(elapsed Ns)", line) for line in started] == [
        f"[1/4] building etcd {v['ETCD_VERSION']} (elapsed Ns)",
        f"[2/4] building helm (helm.sh/helm/v3/cmd/helm@{v['HELM_VERSION']}) (elapsed Ns)",
        f"[3/4] building kubectl {v['K8S_VERSION']} (elapsed Ns)",
        f"[4/4] building kube-apiserver {v['K8S_VERSION']} (elapsed Ns)",
    ]
    assert any(re.fullmatch(r"\[3/4\] still building kubectl \(\d+s so far, elapsed \d+s\)", line)
               for line in progress), progress
    # The same builds as before: one wrapper module, the same flags, one binary at a time.
    go_calls = fake_go.read_text().splitlines()
    kubectl_build = next(c for c in go_calls if c.endswith("k8s.io/kubernetes/cmd/kubectl"))
    assert kubectl_build.startswith("build -mod=mod -trimpath -tags selinux,notest -ldflags -s -w")
    assert f"-X k8s.io/component-base/version.gitVersion={v['K8S_VERSION']}" in kubectl_build
    assert f"-o {k8s_dir}.tmp/kubectl " in kubectl_build
    assert sum(c.startswith("mod download") for c in go_calls) == 1
    wrapper = (cache / "build" / f"kubernetes-{v['K8S_VERSION']}" / "go.mod").read_text()
    minor_patch = v["K8S_VERSION"].removeprefix("v1.")
    assert f"replace k8s.io/api => k8s.io/api v0.{minor_patch}" in wrapper
    for binary in (k8s_dir / "kubectl", k8s_dir / "kube-apiserver", etcd_dir / "etcd",
                   tools_dir / "helm"):
        assert os.access(binary, os.X_OK), binary

    again = run(build, env, "etcd", "kubectl", "helm", "kube-apiserver")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert lines(again.stderr) == ["[1/4] etcd: cached", "[2/4] helm: cached",
                                   "[3/4] kubectl: cached", "[4/4] kube-apiserver: cached"]


def test_build_components_under_a_parent_step_and_a_failing_build(
    tmp_path: Path, env: dict[str, str], fake_go: Path, mark: str
) -> None:
    parent = script(tmp_path, "parent.sh", f"""
steps_init
trap steps_summary EXIT
step_begin components "building"
{HACK}/build-components.sh "$@" >/dev/null
step_end
""")
    result = run(parent, env, "helm")
    assert result.returncode == 0, result.stderr
    rows = table(result.stderr)
    assert list(rows) == ["components", "  helm"]
    assert rows["components"][1] == rows["  helm"][1] == "built"
    env["FAKE_GO_FAIL"] = "kubelet"
    failed = run(parent, env, "helm", "kubelet")
    assert failed.returncode == 2  # go's status, as before
    assert "fake go: cannot build kubelet" in failed.stderr
    assert "  [1/2] helm: cached" in lines(failed.stderr)
    rows = table(failed.stderr)
    assert list(rows) == ["components", "  helm", "  kubelet"]
    assert rows["components"][1] == "failed"
    assert rows["  helm"] == (0.0, "cached")
    assert rows["  kubelet"][1] == "failed"
    assert wait_until_gone(mark) == []
