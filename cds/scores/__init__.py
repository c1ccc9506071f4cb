"""Clinical scores computed from a patient record or its features (NEWS2, model risk)."""
