"""Fuzzing: invariants (checks.py), the HTTP target and one atheris harness per parser."""
