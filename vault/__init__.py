"""chatvault: an air-gapped vault for customer-service conversations."""

__version__ = "0.1.0"
