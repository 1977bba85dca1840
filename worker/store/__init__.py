"""Stores: atomic documents (Redis or SQLite), blobs, files and their paths, custom
metadata fields, saved extensions, units, report claims, embedded metadata (ExifTool)."""
