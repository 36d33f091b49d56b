"""Example applications built on mpiwf."""
