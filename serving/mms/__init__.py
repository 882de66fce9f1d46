"""The MXNet Model Server control plane: config rendering (config), the
management-API client (management), process control (process), the command
line behind start_mms.sh and scale_workers.sh (cli), and a throw-away server
for tests, bench and fault tools (private)."""
