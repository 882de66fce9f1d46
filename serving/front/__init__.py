"""The front door (nginx) over several MMS hosts, and a local fleet to try it on one machine."""
