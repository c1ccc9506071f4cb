"""The HTTP door: the Starlette app, the JWT gate, body reading, OpenAPI, model-card, feedback and sandbox routes."""
