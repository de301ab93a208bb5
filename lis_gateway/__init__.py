"""lis-gateway: laboratory analyzer integration middleware."""

__version__ = "0.1.0"
