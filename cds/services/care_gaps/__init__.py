"""Care gaps: official eCQM logic (measures/), point-of-care readings and the service."""
