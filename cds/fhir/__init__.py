"""FHIR R4 helpers: the patient record, dates, tolerant value access, patient references, units, terminology."""
