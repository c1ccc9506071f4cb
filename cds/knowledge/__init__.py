"""Clinical knowledge as data (code lists, thresholds, rules), each file citing its source."""

from pathlib import Path

KNOWLEDGE_DIR = Path(__file__).resolve().parent
