"""Prometheus metrics for MMS: the exporter, its start/stop, a real Prometheus
for tests and pictures, the picture and the cost bench."""
