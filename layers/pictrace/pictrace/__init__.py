"""PicTrace: image similarity search over an S3 bucket."""

__version__ = "0.1.0"
