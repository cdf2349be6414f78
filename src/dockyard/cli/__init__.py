"""Command-line interface: the wiring root, the only place concrete classes are chosen."""
