"""py-spiffe (PyPI `spiffe`, not ours) against enclave-agent's SPIFFE
Workload API, at $SPIFFE_ENDPOINT_SOCKET. Driven by tests/workload_api.rs.

argv: AUDIENCE MODE, MODE `x509` (the X.509-SVID and its bundle) or `jwt`
(also a JWT-SVID for AUDIENCE, validated by py-spiffe against the fetched
JWT bundle, and by the agent's ValidateJWTSVID). Prints one JSON object.
"""

import json
import sys

from cryptography import x509
from spiffe import JwtSvid, WorkloadApiClient


def chains(leaf, intermediates, roots):
    """Whether leaf -> intermediates... -> one of roots, by signature."""
    current = leaf
    for _ in range(len(intermediates) + 1):
        for root in roots:
            try:
                current.verify_directly_issued_by(root)
                return True
            except Exception:
                pass
        issuer = next(
            (c for c in intermediates if c.subject == current.issuer), None)
        if issuer is None:
            return False
        current.verify_directly_issued_by(issuer)
        current = issuer
    return False


def main():
    audience, mode = sys.argv[1], sys.argv[2]
    client = WorkloadApiClient(default_timeout=20)
    try:
        context = client.fetch_x509_context()
        svid = context.default_svid
        bundle = context.x509_bundle_set.get_bundle_for_trust_domain(
            svid.spiffe_id.trust_domain)
        roots = list(bundle.x509_authorities)
        report = {
            "spiffe_id": str(svid.spiffe_id),
            "trust_domain": str(svid.spiffe_id.trust_domain),
            "chain_length": len(svid.cert_chain),
            "chains_to_bundle": chains(svid.leaf, svid.cert_chain[1:], roots),
        }
        if mode == "jwt":
            token = client.fetch_jwt_svid(audience={audience})
            bundles = client.fetch_jwt_bundles()
            jwt_bundle = bundles.get_bundle_for_trust_domain(
                svid.spiffe_id.trust_domain)
            checked = JwtSvid.parse_and_validate(
                token.token, jwt_bundle, {audience})
            report["jwt_spiffe_id"] = str(checked.spiffe_id)
            report["jwt_audience"] = sorted(checked.audience)
            validated = client.validate_jwt_svid(token.token, audience)
            report["validated_spiffe_id"] = str(validated.spiffe_id)
            try:
                client.validate_jwt_svid(token.token, "https://other.invalid")
                report["other_audience_refused"] = False
            except Exception:
                report["other_audience_refused"] = True
        print(json.dumps(report))
    finally:
        client.close()


if __name__ == "__main__":
    main()
