"""Subcommands of the ``mpiwf`` command line."""
