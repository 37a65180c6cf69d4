"""Run Grafana plugin backends on Kubernetes."""

__version__ = "0.1.0"
