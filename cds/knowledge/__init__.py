"""Clinical knowledge as data (code lists, thresholds, rules), each file citing its source."""
