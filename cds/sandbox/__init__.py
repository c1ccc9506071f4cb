"""The hook sandbox for QA: sample patients (FHIR R4 Bundles dated relative to today), a page at
/sandbox that fires hooks and renders cards as an EHR would, and scenario files checked from the
command line (`cds sandbox check`)."""
