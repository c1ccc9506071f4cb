"""CDS services: one package each, a `cds.hooks.service.CDSService` named by its hooks.json entry."""
