"""What both servers' exporters share, below them both: follow a log file
(logtail), serve a registry until told to stop (serve), read /metrics into
numbers (scrape), and a throw-away Prometheus for tests (prometheus).
The exporters themselves live with their servers (serving.mms.metrics,
serving.front.metrics); benches that measure metrics live in bench/."""
