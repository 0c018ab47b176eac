"""Point-of-sale transaction gateway for medical-insurance cards."""

__version__ = "0.1.0"
