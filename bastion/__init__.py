"""Bastion: a web bastion host with recorded, watched SSH sessions and vetted task modules."""
__version__ = "0.1.0"
