"""Turning uploaded files into searchable chunks: extraction and chunking."""
