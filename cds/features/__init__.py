"""Feature extraction: the one path from FHIR resources to model inputs, for training and serving."""
