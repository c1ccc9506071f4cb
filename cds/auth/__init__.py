"""Client authentication: every CDS Hooks call carries a JWT signed by a trusted client.

auth = Authenticator(settings); await auth.start()
caller = await auth.authenticate(request.headers.get("authorization"), url)  # or AuthError
caller.allows_fhir_server(fhir_server)
await auth.close()
"""

from cds.auth.authenticator import Authenticator, AuthError
from cds.auth.caller import Caller
from cds.auth.devkeys import mint_dev_token

__all__ = ["AuthError", "Authenticator", "Caller", "mint_dev_token"]
