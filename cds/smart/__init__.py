"""SMART Backend Services: the service's own credentials for the FHIR fallback.

When a hook call brings no usable `fhirAuthorization`, the service can obtain a short-lived
access token from the EHR's authorization server with the OAuth 2.0 client-credentials grant and
a signed JWT client assertion (SMART App Launch 2.x, "Backend Services"), as a confidential
client registered with its own key pair. `backend.py` reads the per-client settings,
`tokens.py` obtains and caches tokens, `scopes.py` decides which token covers which query.
"""
