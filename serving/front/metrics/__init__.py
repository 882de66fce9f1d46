"""The front door's Prometheus exporter, kept with the door: nginx's metrics
log format and reader, the exporter process, its start/stop beside the fleet,
and the hosts-up probe."""
