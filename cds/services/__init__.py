"""CDS services: one module each, registered by id in `registry.py`."""
