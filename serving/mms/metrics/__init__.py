"""MMS's Prometheus exporter, kept with the server it watches: the exporter
process, its start/stop beside the server, the workers' multiprocess files and
what only the outside sees about workers."""
