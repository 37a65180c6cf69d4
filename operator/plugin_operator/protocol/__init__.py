"""Grafana's backend plugin protocol: pluginv2 messages, data frames, and an async client.

The gRPC stubs in ``generated/`` are built from ``proto/`` by the package build (a hatch
hook); see :mod:`plugin_operator.protocol.stubs` for how to regenerate them by hand.
"""
