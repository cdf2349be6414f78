"""Benchmarks: Dockyard against CNCF Distribution and the machine's own limits (issue 7),
and garbage collection under load (issue 5). Run `python -m bench --help`."""
