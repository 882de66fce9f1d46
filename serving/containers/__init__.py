"""Container images of the MMS host and the front door, run as a Docker Swarm
stack (serving/containers/README.md)."""
