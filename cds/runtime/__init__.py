"""Process-wide plumbing: settings, logging, hashing, the outbound gate, errors, metrics, model manifest."""
