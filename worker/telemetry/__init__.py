"""Telemetry and operations: logs, Prometheus metrics, the health/metrics HTTP server."""
