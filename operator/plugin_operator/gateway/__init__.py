"""The gateway: Grafana's HTTP API in front of every plugin backend.

Pure logic (routing table, PluginContext building, time ranges, response encoding,
endpoint selection, access decisions) lives in modules without I/O; ``server`` (with its
route families in ``routes``), ``upstream``, ``watch`` and ``assets`` do the I/O.
"""
