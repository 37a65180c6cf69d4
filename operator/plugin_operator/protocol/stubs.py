"""The generated protobuf/gRPC modules, imported in one place with a clear error if missing.

The stubs are build output (git-ignored). ``pip install -e .`` generates them; so does
``python hatch_build.py`` or ``hack/gen-protos.sh`` from the repository root.
"""

from __future__ import annotations

try:
    from plugin_operator.protocol.generated.goplugin import goplugin_pb2, goplugin_pb2_grpc
    from plugin_operator.protocol.generated.grpchealth import health_pb2, health_pb2_grpc
    from plugin_operator.protocol.generated.pluginv2 import backend_pb2, backend_pb2_grpc
    from plugin_operator.protocol.generated.rpcstatus import status_pb2
except ModuleNotFoundError as exc:  # pragma: no cover - exercised by hand, not in CI
    raise ImportError(
        "the protocol stubs in plugin_operator/protocol/generated/ are missing "
        f"({exc.name}); generate them with `pip install -e .` or `python hatch_build.py` "
        "(or hack/gen-protos.sh) from the repository root"
    ) from exc

__all__ = [
    "backend_pb2",
    "backend_pb2_grpc",
    "goplugin_pb2",
    "goplugin_pb2_grpc",
    "health_pb2",
    "health_pb2_grpc",
    "status_pb2",
]
