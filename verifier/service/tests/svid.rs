//! X.509-SVID conformance against the `verifier` binary over HTTPS: every
//! certificate the service issues (root, intermediate, leaf SVIDs) passes
//! the system `openssl verify -x509_strict` (a client no one here wrote),
//! and follows the SPIFFE X.509-SVID profile; the intermediate's name
//! constraint confines it to the trust domain (openssl refuses a leaf the
//! intermediate's key signs for another one); the SPIFFE bundle carries the
//! root and the JWT-SVID keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// The system `openssl`, or `None` outside CI when it is missing (under CI
/// the test fails instead: the independent check must run).
fn openssl() -> Option<PathBuf> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("openssl"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs the openssl command line for the X.509-SVID conformance test"
    );
    eprintln!("openssl not found: skipping the openssl checks");
    None
}

/// `openssl verify -x509_strict -CAfile root [-untrusted intermediate] cert`:
/// whether it verified, and what it said.
fn openssl_verify(
    openssl: &Path,
    root: &Path,
    untrusted: Option<&Path>,
    cert: &Path,
) -> (bool, String) {
    let mut command = Command::new(openssl);
    command
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(root);
    if let Some(intermediate) = untrusted {
        command.arg("-untrusted").arg(intermediate);
    }
    let out = command.arg(cert).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn write_pem(dir: &Path, name: &str, der: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem::encode(&pem::Pem::new("CERTIFICATE", der))).unwrap();
    path
}

/// The extension `oid` of `cert`, which must be there.
fn extension<'a>(
    cert: &'a X509Certificate<'_>,
    oid: &x509_parser::der_parser::oid::Oid<'_>,
) -> &'a x509_parser::extensions::X509Extension<'a> {
    cert.get_extension_unique(oid)
        .unwrap()
        .unwrap_or_else(|| panic!("{}: no extension {oid}", cert.subject()))
}

fn key_ids(cert: &X509Certificate<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut ski, mut aki) = (None, None);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    (ski, aki)
}

/// The CA profile: critical basic constraints with cA, critical key usage
/// keyCertSign + cRLSign and nothing a leaf has, a subject key identifier.
fn assert_ca_profile(cert: &X509Certificate<'_>) {
    use x509_parser::oid_registry::{OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE};
    let basic = extension(cert, &OID_X509_EXT_BASIC_CONSTRAINTS);
    assert!(basic.critical);
    assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
    assert!(extension(cert, &OID_X509_EXT_KEY_USAGE).critical);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());
    assert!(key_ids(cert).0.is_some(), "a CA names its key");
}

/// The intermediate's name constraint: critical, permitting exactly these
/// URI hosts and excluding nothing.
fn permitted_uris(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS;
    let ext = extension(cert, &OID_X509_EXT_NAME_CONSTRAINTS);
    assert!(ext.critical, "the name constraint is critical");
    let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else {
        panic!("the name constraint does not parse");
    };
    assert!(nc.excluded_subtrees.is_none());
    nc.permitted_subtrees
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| match s.base {
            GeneralName::URI(uri) => uri.to_string(),
            ref other => panic!("a permitted subtree that is not a URI: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn every_issued_certificate_passes_openssl_strict_and_the_svid_profile() {
    use x509_parser::oid_registry::{OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME};
    let server = start(constrained(Options::default()));
    let openssl = openssl();
    let dir = tempfile::tempdir().unwrap();
    let (status, bundle) = server.get("/v1/bundle").await;
    assert_eq!(status, 200);
    let root_der = pem::parse(&bundle).unwrap().contents().to_vec();
    let root_path = write_pem(dir.path(), "root.pem", &root_der);
    let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
    assert_ca_profile(&root);

    for tee in [Tee::Nitro, Tee::Snp, Tee::Tdx] {
        let agent = Agent::new();
        let mut body = bound_request(&server, tee, &agent, |_| {}).await;
        body["csr"] = json!(agent.csr());
        let (status, response) = server.post("/v1/attest", &body).await;
        assert_eq!(status, 200, "{response}");
        let chain = pem::parse_many(response["svid"].as_str().unwrap()).unwrap();
        assert_eq!(chain.len(), 2, "the SVID and its intermediate");
        let leaf_path = write_pem(dir.path(), "leaf.pem", chain[0].contents());
        let intermediate_path = write_pem(dir.path(), "intermediate.pem", chain[1].contents());
        let (_, leaf) = x509_parser::parse_x509_certificate(chain[0].contents()).unwrap();
        let (_, intermediate) = x509_parser::parse_x509_certificate(chain[1].contents()).unwrap();

        // RFC 5280 key identifiers link the chain.
        assert_ca_profile(&intermediate);
        let (root_ski, _) = key_ids(&root);
        let (intermediate_ski, intermediate_aki) = key_ids(&intermediate);
        assert_eq!(
            intermediate_aki, root_ski,
            "the intermediate names the root's key"
        );
        assert_eq!(
            key_ids(&leaf).1,
            intermediate_ski,
            "the leaf names the intermediate's key"
        );

        // The intermediate issues only in the workloads' trust domain.
        assert_eq!(permitted_uris(&intermediate), ["attest-gate.test"]);

        // Leaf: exactly one URI SAN, the SPIFFE ID with a path; no CN; not
        // a CA; key usage critical and digitalSignature only.
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect();
        let expected = format!(
            "spiffe://attest-gate.test/example-{}-agent/{}",
            tee_name(tee),
            agent.jwk.jkt()
        );
        assert_eq!(uris, [expected.as_str()]);
        assert_eq!(san.value.general_names.len(), 1);
        if leaf.subject().iter().next().is_none() {
            assert!(extension(&leaf, &OID_X509_EXT_SUBJECT_ALT_NAME).critical);
        }
        assert_eq!(
            leaf.subject().iter_common_name().count(),
            0,
            "no CN identity"
        );
        assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
        assert!(extension(&leaf, &OID_X509_EXT_KEY_USAGE).critical);
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        assert!(!ku.key_cert_sign() && !ku.crl_sign());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);

        if let Some(openssl) = &openssl {
            let (ok, said) = openssl_verify(openssl, &root_path, None, &root_path);
            assert!(ok, "root: {said}");
            let (ok, said) = openssl_verify(openssl, &root_path, None, &intermediate_path);
            assert!(ok, "intermediate: {said}");
            let (ok, said) =
                openssl_verify(openssl, &root_path, Some(&intermediate_path), &leaf_path);
            assert!(ok, "{tee:?} leaf: {said}");
        }
    }
}

/// A leaf the intermediate's own key signs, for `uri`.
fn forged_leaf(server: &Server, intermediate_pem: &str, uri: &str) -> Vec<u8> {
    let key_pem =
        std::fs::read_to_string(server.data_path().join("keys-dev/ca/intermediate.key.pem"))
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        intermediate_pem,
        rcgen::KeyPair::from_pem(&key_pem).unwrap(),
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    params.signed_by(&key, &issuer).unwrap().der().to_vec()
}

/// Even the intermediate's key cannot mint an identity in another trust
/// domain that a validator honouring name constraints accepts: openssl
/// refuses it, while the same leaf in the trust domain verifies.
#[tokio::test]
async fn the_name_constraint_confines_the_intermediate_to_the_trust_domain() {
    let server = start(constrained(Options::default()));
    let dir = tempfile::tempdir().unwrap();
    let (_, bundle) = server.get("/v1/bundle").await;
    let root_path = write_pem(
        dir.path(),
        "root.pem",
        pem::parse(&bundle).unwrap().contents(),
    );
    let intermediate_pem =
        std::fs::read_to_string(server.data_path().join("keys-dev/ca/intermediate.pem")).unwrap();
    let intermediate_der = pem::parse(&intermediate_pem).unwrap().contents().to_vec();
    let (_, intermediate) = x509_parser::parse_x509_certificate(&intermediate_der).unwrap();
    assert_eq!(permitted_uris(&intermediate), ["attest-gate.test"]);
    let intermediate_path = write_pem(dir.path(), "intermediate.pem", &intermediate_der);

    let Some(openssl) = openssl() else { return };
    for (uri, accepted) in [
        ("spiffe://attest-gate.test/example-tdx-agent/k", true),
        ("spiffe://evil.test/example-tdx-agent/k", false),
        // Not a subdomain either: the constraint has no leading period.
        ("spiffe://sub.attest-gate.test/w/k", false),
        ("spiffe://attest-gate.test.evil/w/k", false),
    ] {
        let leaf = write_pem(
            dir.path(),
            "leaf.pem",
            &forged_leaf(&server, &intermediate_pem, uri),
        );
        let (ok, said) = openssl_verify(&openssl, &root_path, Some(&intermediate_path), &leaf);
        assert_eq!(ok, accepted, "{uri}: {said}");
        if !accepted {
            assert!(said.contains("subtree violation"), "{uri}: {said}");
        }
    }
}

/// `GET /v1/bundle/spiffe` is a SPIFFE bundle: the root as a `x509-svid`
/// key with `x5c` and no `kid`, every JWKS key as a `jwt-svid` key with its
/// `kid`, and a refresh hint.
#[tokio::test]
async fn the_spiffe_bundle_carries_the_root_and_the_jwt_svid_keys() {
    let server = start(Options::default());
    let (status, text) = server.get("/v1/bundle/spiffe").await;
    assert_eq!(status, 200);
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let (_, pem_bundle) = server.get("/v1/bundle").await;
    let root_der = pem::parse(&pem_bundle).unwrap().contents().to_vec();
    let keys = bundle["keys"].as_array().unwrap();
    let x509: Vec<&Value> = keys.iter().filter(|k| k["use"] == "x509-svid").collect();
    assert_eq!(x509.len(), 1, "{bundle}");
    assert!(
        x509[0].get("kid").is_none(),
        "x509-svid entries have no kid"
    );
    assert_eq!(x509[0]["x5c"], json!([STANDARD.encode(&root_der)]));
    let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
    let point = root.public_key().subject_public_key.data.to_vec();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x509[0]["x"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        (x509[0]["kty"].as_str(), x.as_slice()),
        (Some("EC"), &point[1..33])
    );

    let jwks: Value = serde_json::from_str(&server.get("/.well-known/jwks.json").await.1).unwrap();
    let kids = |keys: &[Value], usage: &str| -> Vec<String> {
        keys.iter()
            .filter(|k| usage.is_empty() || k["use"] == usage)
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        kids(keys, "jwt-svid"),
        kids(jwks["keys"].as_array().unwrap(), "")
    );
    assert!(bundle["spiffe_refresh_hint"]
        .as_u64()
        .is_some_and(|h| h > 0));
}

/// When the trust domains change, the intermediate is issued again (same
/// key) for exactly the new set, and an SVID chains to it.
#[tokio::test]
async fn the_intermediate_follows_the_trust_domains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let first = start(constrained(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    }));
    let read_intermediate = || {
        let pem = std::fs::read_to_string(data.join("keys-dev/ca/intermediate.pem")).unwrap();
        pem::parse(&pem).unwrap().contents().to_vec()
    };
    let before = read_intermediate();
    let (_, intermediate) = x509_parser::parse_x509_certificate(&before).unwrap();
    assert_eq!(permitted_uris(&intermediate), ["attest-gate.test"]);
    let (_, bundle_before) = first.get("/v1/bundle").await;
    drop(first);

    let other = std::fs::read_to_string(repo().join("measurements/example-nitro-agent.toml"))
        .unwrap()
        .replace(
            "name = \"example-nitro-agent\"",
            "name = \"other-domain-agent\"",
        )
        .replace(
            "trust_domain = \"attest-gate.test\"",
            "trust_domain = \"other.test\"",
        );
    let second = start(constrained(Options {
        data_dir: Some(data.clone()),
        extra_workloads: vec![("other-domain-agent.toml", other)],
        ..Options::default()
    }));
    let after = read_intermediate();
    assert_ne!(after, before, "issued again");
    let (_, reissued) = x509_parser::parse_x509_certificate(&after).unwrap();
    assert_eq!(
        permitted_uris(&reissued),
        ["attest-gate.test", "other.test"]
    );
    assert_eq!(
        reissued.public_key().raw,
        intermediate.public_key().raw,
        "the same key"
    );
    assert_ne!(
        reissued.raw_serial(),
        intermediate.raw_serial(),
        "a new serial (unique per issuer)"
    );
    let (_, bundle_after) = second.get("/v1/bundle").await;
    assert_eq!(bundle_before, bundle_after, "the root stays");
    let agent = Agent::new();
    let mut body = bound_request(&second, Tee::Tdx, &agent, |_| {}).await;
    body["csr"] = json!(agent.csr());
    let (status, response) = second.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{response}");
    let chain = pem::parse_many(response["svid"].as_str().unwrap()).unwrap();
    assert_eq!(chain[1].contents(), after.as_slice());
}

/// `options` with `--svid-name-constraint`: the intermediate limited to the
/// trust domains by a critical URI name constraint.
fn constrained(mut options: Options) -> Options {
    options.args.push("--svid-name-constraint".into());
    options
}

/// Why the name constraint is opt-in, asserted so that it is noticed when
/// it changes: rustls-webpki (0.103) does not implement URI name constraints
/// and fails closed, so a relying party validating SVIDs with rustls
/// refuses them under `--svid-name-constraint` (`NameConstraintViolation`;
/// OpenSSL and Go accept them), and accepts them by default. See
/// docs/decisions.md.
#[tokio::test]
async fn rustls_accepts_svids_by_default_and_refuses_them_under_a_uri_name_constraint() {
    use rustls::pki_types::{CertificateDer, UnixTime};
    for options in [Options::default(), constrained(Options::default())] {
        let constrained = options.args.iter().any(|a| a == "--svid-name-constraint");
        let server = start(options);
        let agent = Agent::new();
        let mut body = bound_request(&server, Tee::Nitro, &agent, |_| {}).await;
        body["csr"] = json!(agent.csr());
        let (status, response) = server.post("/v1/attest", &body).await;
        assert_eq!(status, 200, "{response}");
        let chain = pem::parse_many(response["svid"].as_str().unwrap()).unwrap();
        let (_, intermediate) = x509_parser::parse_x509_certificate(chain[1].contents()).unwrap();
        let has_constraint = intermediate
            .extensions()
            .iter()
            .any(|e| matches!(e.parsed_extension(), ParsedExtension::NameConstraints(_)));
        assert_eq!(has_constraint, constrained);
        let (_, bundle) = server.get("/v1/bundle").await;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(
                pem::parse(&bundle).unwrap().contents().to_vec(),
            ))
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        let verdict = verifier.verify_client_cert(
            &CertificateDer::from(chain[0].contents().to_vec()),
            &[CertificateDer::from(chain[1].contents().to_vec())],
            UnixTime::now(),
        );
        if constrained {
            let refused = verdict.unwrap_err();
            assert!(
                format!("{refused:?}").contains("NameConstraint"),
                "{refused:?}"
            );
        } else {
            verdict.unwrap();
        }
    }
}
