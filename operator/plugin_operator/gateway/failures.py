"""Which failed plugin calls may be tried again on another replica.

Only a call that never reached a plugin is retried: the connection could not be made (by
the gateway to the backend pod, or by the pod's plugin-front to its plugin). A call whose
backend went away after receiving it is not: it may be what killed the backend, and
replaying it would take the next replica down the same way. Both cases are UNAVAILABLE;
only the message tells them apart, in the words of gRPC's C core (the gateway's side) and
of grpc-go (plugin-front's side, relayed as it is).
"""

from __future__ import annotations

import grpc

from plugin_operator.protocol.errors import PluginError

# Lower-case fragments of messages meaning "no connection was made, nothing was sent".
_NOT_CONNECTED = (
    "failed to connect",         # C core: every address refused or unreachable
    "connect failed",            # C core: one address
    "connection refused",        # both: nothing listens on the port or socket
    "error while dialing",       # grpc-go (plugin-front to its plugin)
    "no such file or directory",  # grpc-go: the plugin's unix socket is gone
    "dns resolution failed",
    "name resolution",
    "no route to host",
    "network is unreachable",
    "empty address list",
)


def never_reached_plugin(exc: PluginError) -> bool:
    """True when the call failed before any plugin could have received it."""
    if exc.code is not grpc.StatusCode.UNAVAILABLE:
        return False
    message = exc.message.lower()
    return any(fragment in message for fragment in _NOT_CONNECTED)


def lost_while_serving(exc: PluginError) -> bool:
    """True when the backend went away with the call in progress (socket closed, reset,
    the plugin's process gone): the call reached it, its outcome is unknown."""
    return exc.code is grpc.StatusCode.UNAVAILABLE and not never_reached_plugin(exc)
