//! Differential check of Nitro verification against an independent
//! verifier written here from AWS's own description ("Verifying the root of
//! trust", the NSM API's `attestation_process.md`) with `coset` and
//! `rustls-webpki` used directly: none of the core's envelope, document or
//! chain code is shared. The recorded AWS documents (under AWS's root, at
//! their recorded instant) and forged ones (under the project's test root, at
//! the forge's instant) are mutated — byte edits, truncation, appended bytes,
//! and for forged documents payload edits and field edits *re-signed with the
//! leaf key*, so the field checks after the signature are reached — and
//! every disagreement must fall in a class we chose on purpose:
//!
//! - **PCR length**: AWS allows 32-, 48- and 64-byte PCRs in general; the
//!   document's digest is SHA384 (the only one the NSM uses and the only one
//!   we accept), so we require 48.
//! - **PCR index**: the oracle follows the NSM API's `0..=32` literally;
//!   we allow the 32 registers `0..32` the NSM has.
//! - **duplicate PCR index** / **duplicate key**: a CBOR map with a
//!   repeated key is not a map (RFC 8949 §5.6: not well-formed for our
//!   purposes); the oracle, like most decoders, reads the first.
//! - **unknown key**: the document has exactly the nine fields AWS defines;
//!   we refuse others (unsigned-meaning bytes are not slack), the oracle
//!   ignores them.
//! - **cabundle length**: at most 16 certificates (the real chain has 4);
//!   the oracle has no bound.
//! - **bytes after the payload**: the payload is exactly one CBOR map
//!   (invariant 3: parsers consume exactly their input); the oracle's CBOR
//!   reader, like most, stops after the first item. An edit of the map's
//!   header to a smaller count leaves the last fields as trailing bytes.
//! - **timestamp range**: the timestamp must be an instant (milliseconds up
//!   to the year 9999); the oracle takes any positive 64-bit number.
//!
//! Where both accept, the decoded document must be the same (module, digest,
//! time, every PCR, nonce, user data, public key). The number of mutations
//! is `ATTEST_GATE_DIFFERENTIAL_MUTATIONS` (default 2,000, what CI runs);
//! the long run's figures are in docs/reliability.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use attest_gate_core::{Collateral, PlatformClaims, TeeKind, TrustAnchors, Verifier};
use attest_gate_forge::nitro;
use attest_gate_tests::fixtures_dir;
use ciborium::value::Value;
use common::{Rng, Verdict};
use coset::{iana, CborSerializable, CoseSign1, CoseSign1Builder, TaggedCborSerializable};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// AWS's description of the document, as the oracle reads it.
mod aws {
    use super::*;

    /// The fields of a document that passed the oracle, in one comparable
    /// line.
    pub(super) fn summary(
        module_id: &str,
        digest: &str,
        timestamp_ms: u64,
        pcrs: &BTreeMap<u64, Vec<u8>>,
        optional: [&Option<Vec<u8>>; 3],
    ) -> String {
        let pcrs: Vec<String> = pcrs
            .iter()
            .map(|(i, v)| format!("{i}={}", hex::encode(v)))
            .collect();
        let [public_key, user_data, nonce] = optional.map(|v| v.as_ref().map(hex::encode));
        format!(
            "{module_id} {digest} {timestamp_ms} [{}] pk={public_key:?} ud={user_data:?} \
             nonce={nonce:?}",
            pcrs.join(",")
        )
    }

    fn field<'a>(map: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
        map.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    }

    fn bytes_in(v: &Value, min: usize, max: usize) -> Result<Vec<u8>, String> {
        match v.as_bytes() {
            Some(b) if (min..=max).contains(&b.len()) => Ok(b.clone()),
            Some(b) => Err(format!("length {} not in {min}..={max}", b.len())),
            None => Err("not a byte string".into()),
        }
    }

    fn optional(
        map: &[(Value, Value)],
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        match field(map, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => bytes_in(v, min, max)
                .map(Some)
                .map_err(|e| format!("{name}: {e}")),
        }
    }

    /// Verifies `doc` as AWS describes: a COSE_Sign1 with `alg: ES384` in its
    /// protected header; a CBOR map payload whose mandatory fields have the
    /// documented types and sizes; a chain from `certificate` through
    /// `cabundle[1..]` to `root` (which `cabundle[0]` must be), valid at
    /// `at`; and the ES384 signature by the leaf's key.
    pub(super) fn verify(doc: &[u8], root: &[u8], at: OffsetDateTime) -> Result<String, String> {
        let sign1 = CoseSign1::from_slice(doc)
            .or_else(|_| CoseSign1::from_tagged_slice(doc))
            .map_err(|e| format!("COSE_Sign1: {e}"))?;
        if sign1.protected.header.alg
            != Some(coset::RegisteredLabelWithPrivate::Assigned(
                iana::Algorithm::ES384,
            ))
        {
            return Err("protected alg is not ES384".into());
        }
        let payload = sign1.payload.as_deref().ok_or("no payload")?;
        let value: Value =
            ciborium::de::from_reader(payload).map_err(|e| format!("payload: {e}"))?;
        let map = value.as_map().ok_or("payload is not a map")?;
        let need = |name: &str| field(map, name).ok_or(format!("{name} missing"));

        let module_id = need("module_id")?.as_text().ok_or("module_id: not text")?;
        if module_id.is_empty() {
            return Err("module_id empty".into());
        }
        let digest = need("digest")?.as_text().ok_or("digest: not text")?;
        if digest != "SHA384" {
            return Err(format!("digest {digest}"));
        }
        let timestamp: u64 = need("timestamp")?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|t| *t > 0)
            .ok_or("timestamp: not a positive integer")?;
        let pcr_map = need("pcrs")?.as_map().ok_or("pcrs: not a map")?;
        if !(1..=32).contains(&pcr_map.len()) {
            return Err(format!("{} PCRs", pcr_map.len()));
        }
        let mut pcrs = BTreeMap::new();
        for (index, value) in pcr_map {
            let index = index
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .filter(|i| *i <= 32)
                .ok_or("PCR index out of range")?;
            let value = value.as_bytes().ok_or("PCR value not bytes")?;
            if ![32, 48, 64].contains(&value.len()) {
                return Err(format!("PCR{index} length {}", value.len()));
            }
            pcrs.entry(index).or_insert_with(|| value.clone());
        }
        let certificate =
            bytes_in(need("certificate")?, 1, 1024).map_err(|e| format!("certificate: {e}"))?;
        let cabundle = need("cabundle")?
            .as_array()
            .ok_or("cabundle: not an array")?;
        let cabundle = cabundle
            .iter()
            .map(|c| bytes_in(c, 1, 1024))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cabundle: {e}"))?;
        let public_key = optional(map, "public_key", 1, 1024)?;
        let user_data = optional(map, "user_data", 0, 512)?;
        let nonce = optional(map, "nonce", 0, 512)?;

        // The chain: cabundle[0] is the root, which must be AWS's.
        let (first, intermediates) = cabundle.split_first().ok_or("cabundle empty")?;
        if first.as_slice() != root {
            return Err("cabundle[0] is not the root".into());
        }
        let root_der = CertificateDer::from(root);
        let anchor =
            webpki::anchor_from_trusted_cert(&root_der).map_err(|e| format!("root: {e}"))?;
        let leaf_der = CertificateDer::from(certificate.as_slice());
        let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| format!("leaf: {e}"))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at.unix_timestamp()).unwrap(),
        ));
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| format!("chain: {e}"))?;
        sign1
            .verify_signature(&[], |signature, signed| {
                leaf.verify_signature(
                    webpki::aws_lc_rs::ECDSA_P384_SHA384,
                    signed,
                    &der_of(signature)?,
                )
            })
            .map_err(|e| format!("signature: {e}"))?;
        Ok(summary(
            module_id,
            digest,
            timestamp,
            &pcrs,
            [&public_key, &user_data, &nonce],
        ))
    }

    /// COSE's `r ‖ s` as the DER `ECDSA-Sig-Value` webpki verifies.
    fn der_of(fixed: &[u8]) -> Result<Vec<u8>, webpki::Error> {
        if fixed.len() != 96 {
            return Err(webpki::Error::InvalidSignatureForPublicKey);
        }
        let integer = |half: &[u8]| {
            let trimmed: Vec<u8> = half.iter().copied().skip_while(|b| *b == 0).collect();
            let mut out = vec![0x02];
            let pad = trimmed.first().is_none_or(|b| b & 0x80 != 0);
            out.push((trimmed.len() + usize::from(pad)) as u8);
            if pad {
                out.push(0);
            }
            out.extend(trimmed);
            out
        };
        let (r, s) = fixed.split_at(48);
        let body = [integer(r), integer(s)].concat();
        let mut out = vec![0x30];
        if body.len() >= 0x80 {
            out.push(0x81);
        }
        out.push(body.len() as u8);
        out.extend(body);
        Ok(out)
    }
}

fn ours(verifier: &Verifier, doc: &[u8], at: OffsetDateTime) -> Verdict {
    match verifier.verify(TeeKind::Nitro, doc, &Collateral::empty(), at) {
        Ok(claims) => {
            let PlatformClaims::Nitro {
                module_id,
                digest,
                timestamp,
            } = claims.platform()
            else {
                panic!("Nitro claims")
            };
            let pcrs: BTreeMap<u64, Vec<u8>> = claims
                .measurements()
                .iter()
                .map(|m| {
                    (
                        m.name.trim_start_matches("pcr").parse().unwrap(),
                        m.value.as_bytes().to_vec(),
                    )
                })
                .collect();
            let bound = claims.bound();
            let ms = u64::try_from(timestamp.unix_timestamp_nanos() / 1_000_000).unwrap();
            Verdict::Accepted(aws::summary(
                module_id,
                digest,
                ms,
                &pcrs,
                [&bound.public_key, &bound.user_data, &bound.nonce],
            ))
        }
        Err(e) => Verdict::Refused(e.code().to_string()),
    }
}

fn oracle(doc: &[u8], root: &[u8], at: OffsetDateTime) -> Verdict {
    match aws::verify(doc, root, at) {
        Ok(summary) => Verdict::Accepted(summary),
        Err(why) => Verdict::Refused(why),
    }
}

/// One document to mutate: what verifies it, its root and instant, and
/// for a forged one the leaf key to re-sign with.
struct Subject {
    id: String,
    doc: Vec<u8>,
    vendor: bool,
    valid: bool,
    root: Vec<u8>,
    at: OffsetDateTime,
    leaf: Option<attest_gate_forge::keys::TestKey>,
}

fn subjects() -> Vec<Subject> {
    let mut out = Vec::new();
    if let Some(dir) = fixtures_dir() {
        let root = pem::parse(
            std::fs::read(dir.join("nitro/_trust/aws_nitro_enclaves_root_g1.pem")).unwrap(),
        )
        .unwrap()
        .into_contents();
        for sample in attest_gate_tests::samples(&dir, "nitro") {
            let id = sample["id"].as_str().unwrap().to_string();
            let doc = std::fs::read(dir.join("nitro").join(format!("{id}.cose"))).unwrap();
            let at =
                OffsetDateTime::parse(sample["verify_at"].as_str().unwrap(), &Rfc3339).unwrap();
            let valid = sample["valid"] != false;
            out.push(Subject {
                id,
                doc,
                vendor: true,
                valid,
                root: root.clone(),
                at,
                leaf: None,
            });
        }
    }
    let chain = nitro::chain_spec().issue().unwrap();
    let bundle = nitro::bundle(&chain);
    let with_binding = nitro::DocSpec {
        public_key: Some(vec![4; 65]),
        user_data: Some(b"attest-gate binding".to_vec()),
        ..nitro::DocSpec::default()
    };
    let tagged = nitro::DocSpec {
        tagged: true,
        ..nitro::DocSpec::default()
    };
    for (name, spec) in [
        ("default", nitro::DocSpec::default()),
        ("debug", nitro::DocSpec::debug()),
        ("bound", with_binding),
        ("tagged", tagged),
    ] {
        out.push(Subject {
            id: format!("forged/{name}"),
            doc: spec.sign(&chain, &bundle).unwrap(),
            vendor: false,
            valid: true,
            root: chain.root.clone(),
            at: nitro::FORGE_INSTANT,
            leaf: Some(chain.leaf_key.clone()),
        });
    }
    out
}

/// `doc` with `payload` in place of its own, signed again by `key`.
fn resign(doc: &[u8], payload: Vec<u8>, key: &attest_gate_forge::keys::TestKey) -> Vec<u8> {
    let tagged = CoseSign1::from_slice(doc).is_err();
    let original = CoseSign1::from_slice(doc)
        .or_else(|_| CoseSign1::from_tagged_slice(doc))
        .unwrap();
    let sign1 = CoseSign1Builder::new()
        .protected(original.protected.header)
        .unprotected(original.unprotected)
        .payload(payload)
        .create_signature(&[], |tbs| key.sign_fixed(tbs))
        .build();
    if tagged {
        sign1.to_tagged_vec()
    } else {
        sign1.to_vec()
    }
    .unwrap()
}

fn payload_of(doc: &[u8]) -> Vec<u8> {
    CoseSign1::from_slice(doc)
        .or_else(|_| CoseSign1::from_tagged_slice(doc))
        .unwrap()
        .payload
        .unwrap()
}

const FIELDS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

/// A value of some other shape, or a byte string of a boundary length.
fn other_value(rng: &mut Rng) -> Value {
    let lengths = [0, 1, 31, 32, 33, 47, 48, 49, 64, 65, 512, 513, 1024, 1025];
    match rng.below(8) {
        0 => Value::Null,
        1 => Value::Integer((rng.below(1 << 20) as i64 - 10).into()),
        2 => Value::Text(["", "SHA384", "SHA256", "sha384", "x"][rng.below(5)].into()),
        3 => Value::Array(vec![]),
        4 => Value::Map(vec![]),
        5 => Value::Bool(true),
        _ => Value::Bytes(vec![
            rng.below(256) as u8;
            lengths[rng.below(lengths.len())]
        ]),
    }
}

/// One structural edit of the payload map: the field checks' inputs.
/// Returns the edit's class name (for the stricter-class rules).
fn edit_fields(map: &mut Vec<(Value, Value)>, rng: &mut Rng) -> &'static str {
    let name = FIELDS[rng.below(FIELDS.len())];
    let at = map.iter().position(|(k, _)| k.as_text() == Some(name));
    match (rng.below(8), at) {
        (0, Some(at)) => {
            map.remove(at);
            "field removed"
        }
        (1, Some(at)) => {
            map[at].1 = other_value(rng);
            "field replaced"
        }
        (2, _) => {
            map.push((
                Value::Text(["unknown", "extra", "nonce2"][rng.below(3)].into()),
                other_value(rng),
            ));
            "unknown key"
        }
        (3, Some(at)) => {
            let copy = map[at].clone();
            map.push(copy);
            "duplicate key"
        }
        (4, _) => {
            let Some((_, Value::Map(pcrs))) =
                map.iter_mut().find(|(k, _)| k.as_text() == Some("pcrs"))
            else {
                return "no pcrs";
            };
            let index = rng.below(40) as i64 - 2;
            let len = [32, 48, 64, 47, 0][rng.below(5)];
            pcrs.push((Value::Integer(index.into()), Value::Bytes(vec![7; len])));
            "PCR added"
        }
        (5, _) => {
            let Some((_, Value::Map(pcrs))) =
                map.iter_mut().find(|(k, _)| k.as_text() == Some("pcrs"))
            else {
                return "no pcrs";
            };
            if rng.below(4) == 0 {
                pcrs.clear();
            } else if !pcrs.is_empty() {
                let i = rng.below(pcrs.len());
                pcrs.remove(i);
            }
            "PCR removed"
        }
        (6, _) => {
            let Some((_, Value::Array(bundle))) = map
                .iter_mut()
                .find(|(k, _)| k.as_text() == Some("cabundle"))
            else {
                return "no cabundle";
            };
            match rng.below(3) {
                0 if !bundle.is_empty() => {
                    let i = rng.below(bundle.len());
                    bundle.remove(i);
                }
                1 if !bundle.is_empty() => {
                    let i = rng.below(bundle.len());
                    let copy = bundle[i].clone();
                    for _ in 0..rng.below(16) + 1 {
                        bundle.push(copy.clone());
                    }
                }
                _ => bundle.reverse(),
            }
            "cabundle edited"
        }
        (_, Some(at)) => {
            if let Value::Integer(_) = map[at].1 {
                map[at].1 = Value::Integer([0, 1, u64::MAX as i64][rng.below(3)].into());
            } else {
                let other = rng.below(map.len());
                map.swap(at, other);
            }
            "field shuffled"
        }
        _ => "nothing",
    }
}

/// Why a refusal by us of what the oracle accepts is deliberate, if it is.
fn stricter_class(doc: &[u8]) -> &'static str {
    let payload = payload_of(doc);
    let mut rest = payload.as_slice();
    let Ok(Value::Map(map)) = ciborium::de::from_reader::<Value, _>(&mut rest) else {
        return "UNEXPLAINED";
    };
    if !rest.is_empty() {
        return "bytes after the payload";
    }
    let keys: Vec<&str> = map.iter().filter_map(|(k, _)| k.as_text()).collect();
    if keys.len() != map.len() || keys.iter().any(|k| !FIELDS.contains(k)) {
        return "unknown key";
    }
    if (1..keys.len()).any(|i| keys[..i].contains(&keys[i])) {
        return "duplicate key";
    }
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    };
    if let Some(Value::Map(pcrs)) = field("pcrs") {
        let indices: Vec<_> = pcrs.iter().map(|(i, _)| i.as_integer()).collect();
        if pcrs
            .iter()
            .any(|(_, v)| v.as_bytes().is_some_and(|b| b.len() != 48))
        {
            return "PCR length";
        }
        if indices
            .iter()
            .any(|i| i.is_some_and(|i| i128::from(i) == 32))
        {
            return "PCR index";
        }
        if (1..indices.len()).any(|i| indices[..i].contains(&indices[i])) {
            return "duplicate PCR index";
        }
    }
    if field("timestamp")
        .and_then(Value::as_integer)
        .is_some_and(|t| i128::from(t) > 253_402_300_799_999)
    {
        return "timestamp range";
    }
    if let Some(Value::Array(bundle)) = field("cabundle") {
        if bundle.len() > 16 {
            return "cabundle length";
        }
    }
    "UNEXPLAINED"
}

#[test]
fn mutated_nitro_documents_get_the_independent_verdict_or_a_deliberate_stricter_one() {
    let (mutations, seed) = common::differential_run(2_000, 20_261_206);
    let vendor = Verifier::new(TrustAnchors::vendor().unwrap());
    let subjects = subjects();
    let test = Verifier::new(
        TrustAnchors::test_roots(vec![subjects.last().unwrap().root.clone()]).unwrap(),
    );
    // Unmutated, both accept every subject and decode it alike.
    for s in &subjects {
        let verifier = if s.vendor { &vendor } else { &test };
        let (we, they) = (ours(verifier, &s.doc, s.at), oracle(&s.doc, &s.root, s.at));
        if !s.valid {
            assert!(
                matches!((&we, &they), (Verdict::Refused(_), Verdict::Refused(_))),
                "{}",
                s.id
            );
        } else {
            assert!(matches!(we, Verdict::Accepted(_)), "{}: {we:?}", s.id);
            assert_eq!(we, they, "{}", s.id);
        }
    }
    // The class the long run found: a map header one smaller leaves the
    // last field (the nonce) after the map, signed; we refuse, the oracle
    // reads the map and stops.
    let forged = subjects.iter().find(|s| s.id == "forged/default").unwrap();
    let mut payload = payload_of(&forged.doc);
    assert_eq!(payload[0], 0xa9, "a map of nine fields");
    payload[0] = 0xa8;
    let short = resign(&forged.doc, payload, forged.leaf.as_ref().unwrap());
    assert_eq!(
        ours(&test, &short, forged.at),
        Verdict::Refused("malformed_evidence".into())
    );
    assert!(matches!(
        oracle(&short, &forged.root, forged.at),
        Verdict::Accepted(_)
    ));
    assert_eq!(stricter_class(&short), "bytes after the payload");
    assert!(subjects.len() >= 8, "only {} subjects", subjects.len());

    let mut rng = Rng(seed);
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for n in 0..mutations {
        let s = &subjects[rng.below(subjects.len())];
        let mut doc = s.doc.clone();
        let kind = match (rng.below(100), &s.leaf) {
            (0..=29, _) | (40.., None) => {
                let at = rng.below(doc.len());
                doc[at] ^= rng.flip();
                "byte"
            }
            (30..=34, _) => {
                doc.truncate(rng.below(doc.len()));
                "truncated"
            }
            (35..=39, _) => {
                doc.extend((0..1 + rng.below(16)).map(|_| rng.below(256) as u8));
                "appended"
            }
            (40..=64, Some(key)) => {
                let mut payload = payload_of(&doc);
                let at = rng.below(payload.len());
                payload[at] ^= rng.flip();
                doc = resign(&doc, payload, key);
                "payload byte, re-signed"
            }
            (_, Some(key)) => {
                let Ok(Value::Map(mut map)) =
                    ciborium::de::from_reader(payload_of(&doc).as_slice())
                else {
                    panic!("a forged payload is a map")
                };
                edit_fields(&mut map, &mut rng);
                let mut payload = Vec::new();
                ciborium::ser::into_writer(&Value::Map(map), &mut payload).unwrap();
                doc = resign(&doc, payload, key);
                "field edit, re-signed"
            }
        };
        let verifier = if s.vendor { &vendor } else { &test };
        let (we, they) = (ours(verifier, &doc, s.at), oracle(&doc, &s.root, s.at));
        let class = match (&we, &they) {
            (Verdict::Refused(_), Verdict::Refused(_)) => "both refuse",
            (Verdict::Accepted(a), Verdict::Accepted(b)) if a == b => "both accept, same document",
            (Verdict::Refused(_), Verdict::Accepted(_)) => stricter_class(&doc),
            _ => "UNEXPLAINED",
        };
        if class == "UNEXPLAINED" {
            unexplained.push(format!(
                "#{n} {} ({kind}): we {we:?}, the oracle {they:?}",
                s.id
            ));
        }
        *tally.entry(class).or_default() += 1;
    }
    common::assert_all_explained("Nitro", mutations, seed, &tally, &unexplained);
}
