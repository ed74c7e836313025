"""Observability: the tracking id every answer and log line carries, logging, Prometheus
metrics, OpenTelemetry tracing."""
