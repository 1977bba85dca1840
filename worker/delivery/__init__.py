"""Delivery of files: URLs, signatures, transformations and their derivatives."""
