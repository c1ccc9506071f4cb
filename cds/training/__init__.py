"""Training pipelines: data sets turned into FHIR, features, models, evaluations and model cards."""
