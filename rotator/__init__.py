"""rotator: rotates AWS IAM credentials safely, on a schedule and on demand."""

__version__ = "0.1.0"
