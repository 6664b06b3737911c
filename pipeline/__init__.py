"""Thin DVC stage scripts: read params, call the `skdcgn` library, write outputs, metrics and plots."""
