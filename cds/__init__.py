"""cds: a CDS Hooks 2.0 clinical decision-support service.

Decision support for clinicians, for research and development; validate locally before any
clinical use. It never makes a diagnosis.
"""

__version__ = "0.1.0"
