"""The in-pod host: runs one unmodified plugin backend the way Grafana does."""
