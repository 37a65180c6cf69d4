"""Generate the gRPC/protobuf stubs of plugin_operator.protocol from our .proto files.

Runs as a hatch build hook (so ``pip install -e .`` and wheel builds produce the stubs) and
by hand: ``python hatch_build.py`` (or ``hack/gen-protos.sh``). The output in
``operator/plugin_operator/protocol/generated/`` is git-ignored and never edited.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
PROTO_DIR = ROOT / "operator" / "plugin_operator" / "protocol" / "proto"
PACKAGE = "plugin_operator/protocol/generated"
OUT_ROOT = ROOT / "operator"


def generate_stubs() -> list[Path]:
    """Compile every .proto under PROTO_DIR; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    out_dir = OUT_ROOT / PACKAGE
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_DIR}")
    # The virtual include path makes the generated imports absolute inside our package
    # (plugin_operator.protocol.generated.<dir>), so no sys.path tricks are needed.
    args = ["grpc_tools.protoc", f"-I{PACKAGE}={PROTO_DIR}", f"-I{wkt}",
            f"--python_out={OUT_ROOT}", f"--grpc_python_out={OUT_ROOT}"]
    try:
        import mypy_protobuf  # noqa: F401
        args += [f"--mypy_out={OUT_ROOT}", f"--mypy_grpc_out={OUT_ROOT}"]
        plugin_args = _mypy_plugin_args()
        args[1:1] = plugin_args
    except ImportError:
        pass  # the .pyi files are for type checking only; the stubs work without them
    args += [f"{PACKAGE}/{p}" for p in protos]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(protos))
    for directory in [out_dir, *(d for d in out_dir.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    return sorted(out_dir.rglob("*.py*"))


def _mypy_plugin_args() -> list[str]:
    """protoc needs the mypy-protobuf plugins as executables; find them beside python."""
    bindir = Path(sys.executable).parent
    found = []
    for name, flag in (("protoc-gen-mypy", "mypy"), ("protoc-gen-mypy_grpc", "mypy_grpc")):
        path = bindir / name
        located = str(path) if path.exists() else shutil.which(name)
        if located is None:
            raise ImportError(name)
        found.append(f"--plugin=protoc-gen-{flag}={located}")
    return found


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # running by hand without hatchling installed
    BuildHookInterface = object  # type: ignore[assignment,misc]


class ProtocolStubsHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatch build hook: generate the stubs and ship them in the wheel."""

    PLUGIN_NAME = "protocol-stubs"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generated = generate_stubs()
        if self.target_name == "wheel" and version != "editable":
            build_data.setdefault("force_include", {}).update(
                {str(p): str(p.relative_to(OUT_ROOT)) for p in generated})


if __name__ == "__main__":
    files = generate_stubs()
    print(f"generated {len(files)} files in {OUT_ROOT / PACKAGE}")
