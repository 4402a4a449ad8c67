"""Observability shared by the daemons: structured logs and the /metrics + /healthz endpoint."""
