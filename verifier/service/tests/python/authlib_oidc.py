"""An OIDC relying party no one here wrote (Authlib): discover the issuer,
fetch its JWKS from the discovered `jwks_uri`, and validate a JWT-SVID's
signature, `iss`, `aud` and `exp` the way a federation consumer would.

Usage: authlib_oidc.py ISSUER TOKEN AUDIENCE CA_FILE
Exits 0 and prints the claims as JSON if the token is valid for AUDIENCE;
exits non-zero otherwise. Driven by verifier/service/tests/jwt_svid.rs.
"""

import json
import sys

import requests
from authlib.jose import JsonWebKey, JsonWebToken


def main() -> None:
    issuer, token, audience, ca_file = sys.argv[1:5]
    # `verify` on each request: a session's is overridden by
    # REQUESTS_CA_BUNDLE when that is set in the environment.
    def get(url: str) -> dict:
        response = requests.get(url, timeout=10, verify=ca_file)
        response.raise_for_status()
        return response.json()

    meta = get(issuer + "/.well-known/openid-configuration")
    if meta["issuer"] != issuer:
        sys.exit("discovery names another issuer: " + meta["issuer"])
    for required in ("jwks_uri", "response_types_supported", "subject_types_supported",
                     "id_token_signing_alg_values_supported"):
        if required not in meta:
            sys.exit("discovery lacks " + required)
    keys = JsonWebKey.import_key_set(get(meta["jwks_uri"]))
    jwt = JsonWebToken(meta["id_token_signing_alg_values_supported"])
    claims = jwt.decode(
        token,
        keys,
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": audience},
            "sub": {"essential": True},
            "exp": {"essential": True},
        },
    )
    claims.validate()
    print(json.dumps(dict(claims)))


if __name__ == "__main__":
    main()
