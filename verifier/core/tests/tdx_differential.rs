//! Differential check of TDX verification against Phala's dcap-qvl 0.7.1, an
//! independent implementation of Intel's rules: the recorded quotes and their
//! collateral bundles, mutated (byte edits anywhere, edits in the
//! certification data's tail, truncation, appended bytes, collateral edits),
//! are verified by both at the bundle's instant, and every disagreement must
//! fall in a class we chose on purpose:
//!
//! - **embedded root**: an edit inside the quote's copy of the root
//!   certificate. We require it to be byte-identical to the pinned Intel SGX
//!   Root CA; dcap-qvl ignores it and uses its own.
//! - **after the PEM chain**: non-zero bytes after the last certificate of
//!   the certification data (or after the quote). We refuse them
//!   (invariant 10, unsigned bytes are not slack); dcap-qvl ignores them.
//! - **certification-data type**: the quote signature's certification data
//!   must be type 6 (QE report certification data) and the nested one type 5
//!   (PEM chain); dcap-qvl reads the nested data whatever the types say.
//! - **declared length**: the signature data's, the certification data's and
//!   the QE authentication data's lengths must be exactly what follows
//!   (invariant 3, parsers consume exactly their input); dcap-qvl reads what
//!   it needs and ignores the rest.
//! - **PEM line structure**: a line break of the PCK chain replaced by
//!   another byte. We read the chain as RFC 7468 PEM, one certificate after
//!   another on their own lines; dcap-qvl's parser skips what is between.
//! - **embedded root (collateral issuer chain)**: the same for the root at
//!   the end of the TCB info's or QE identity's issuer chain.
//! - **informational pck_crl_issuer_chain.pem**: we never read it (the PCK
//!   CRL must be signed by the CA that issued the quote's PCK); dcap-qvl
//!   refuses one that is not text.
//! - **dcap-qvl's own policy**: where dcap-qvl already refuses the unmutated
//!   quote for its policy (debug TD, SEPT_VE_DISABLE) with the same message,
//!   and we verify it (appraisal, not verification, judges those).
//!
//! Where both accept, the TCB status must be the same. The number of
//! mutations is `ATTEST_GATE_DIFFERENTIAL_MUTATIONS` (default 2,000, what CI
//! runs); the long run's figures are in docs/reliability.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::ops::Range;

use attest_gate_core::tdx::names;
use attest_gate_core::{Collateral, TeeKind, TrustAnchors, Verifier};
use attest_gate_tests::{dcap_qvl_collateral_of, fixtures_dir, tdx_recorded};
use common::{Rng, Verdict};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The regions where we are deliberately stricter than dcap-qvl.
struct Regions {
    /// The last PEM certificate in the quote: the embedded root.
    root: Range<usize>,
    /// From the end of the PEM chain on.
    after_chain: usize,
    /// The outer and the inner certification-data types (u16 each).
    types: [Range<usize>; 2],
    /// The declared lengths: signature data, outer certification data, QE
    /// authentication data, inner certification data.
    lengths: [Range<usize>; 4],
    /// Where the PEM chain starts.
    chain: usize,
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The last PEM certificate in `bytes` (the root, in a chain), with the
/// line end after it.
fn last_pem(bytes: &[u8]) -> Option<Range<usize>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let begin = find_last(bytes, BEGIN)?;
    let mut end = find_last(bytes, END)? + END.len();
    if bytes.get(end) == Some(&b'\n') {
        end += 1;
    }
    Some(begin..end)
}

/// Whether `at` is inside the root certificate of an issuer-chain item.
fn in_chain_root((name, bytes): &(String, Vec<u8>), at: usize) -> bool {
    // The root, and the line break before it.
    name.ends_with("_chain.pem")
        && last_pem(bytes)
            .is_some_and(|root| (root.start.saturating_sub(1)..root.end).contains(&at))
}

fn regions(quote: &[u8]) -> Regions {
    let root = last_pem(quote).expect("a PEM chain in the quote");
    let (begin, end) = (root.start, root.end);
    let u16_at = |at: usize| u16::from_le_bytes([quote[at], quote[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(quote[at..at + 4].try_into().unwrap()) as usize;
    // Quote v4: 48-byte header, 584-byte TD report, then the signature data's
    // length; v5: header, body type and size, the body, then that length.
    let signature_data = if u16_at(0) >= 5 {
        48 + 6 + u32_at(50) + 4
    } else {
        48 + 584 + 4
    };
    // ECDSA signature (64) and attestation key (64), then the outer type
    // and size; the QE report (384) and its signature (64); the QE
    // authentication data's size and bytes; the inner type and size.
    let outer = signature_data + 128;
    let auth = outer + 6 + 384 + 64;
    let inner = auth + 2 + u16_at(auth);
    let chain = find_first(quote, b"-----BEGIN CERTIFICATE-----").unwrap_or(end);
    Regions {
        root: begin..end,
        after_chain: end,
        types: [outer..outer + 2, inner..inner + 2],
        lengths: [
            signature_data - 4..signature_data,
            outer + 2..outer + 6,
            auth..auth + 2,
            inner + 2..inner + 6,
        ],
        chain,
    }
}

fn find_first(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why a refusal by us of what dcap-qvl accepts is deliberate, if it is.
fn stricter_class(original: &[u8], edited_at: Option<usize>) -> Option<&'static str> {
    let at = edited_at?;
    let r = regions(original);
    if r.root.contains(&at) {
        Some("embedded root")
    } else if at >= r.after_chain {
        Some("after the PEM chain")
    } else if r.types.iter().any(|t| t.contains(&at)) {
        Some("certification-data type")
    } else if r.lengths.iter().any(|l| l.contains(&at)) {
        Some("declared length")
    } else if at >= r.chain && original.get(at) == Some(&b'\n') {
        Some("PEM line structure")
    } else {
        None
    }
}

fn ours(
    verifier: &Verifier,
    quote: &[u8],
    items: &[(String, Vec<u8>)],
    at: OffsetDateTime,
) -> Verdict {
    match verifier.verify(
        TeeKind::Tdx,
        quote,
        &Collateral::from_items(items.to_vec()),
        at,
    ) {
        Ok(claims) => Verdict::Accepted(claims.tcb_status().unwrap().as_str().to_string()),
        Err(e) => Verdict::Refused(e.code().to_string()),
    }
}

fn oracle(quote: &[u8], items: &[(String, Vec<u8>)], at: OffsetDateTime) -> Verdict {
    let Some(collateral) = dcap_qvl_collateral_of(items) else {
        return Verdict::Refused("collateral does not parse".into());
    };
    match dcap_qvl::verify::verify(quote, &collateral, at.unix_timestamp() as u64) {
        Ok(report) => Verdict::Accepted(report.status),
        Err(e) => Verdict::Refused(format!("{e:#}")),
    }
}

#[test]
fn mutated_recorded_quotes_get_dcap_qvls_verdict_or_a_deliberate_stricter_one() {
    let Some(dir) = fixtures_dir() else { return };
    let (mutations, seed) = common::differential_run(2_000, 20_261_203);
    let verifier = Verifier::new(TrustAnchors::vendor().unwrap());
    let pairings: Vec<_> = tdx_recorded(&dir)
        .into_iter()
        .map(|r| {
            let at = OffsetDateTime::parse(&r.at, &Rfc3339).unwrap();
            let items = common::tdx_folder(&r.bundle);
            // dcap-qvl's verdict on the unmutated pair, for its own policy.
            let baseline = (
                ours(&verifier, &r.quote, &items, at),
                oracle(&r.quote, &items, at),
            );
            (r, at, items, baseline)
        })
        .collect();
    assert!(
        pairings.len() >= 12,
        "only {} recorded pairings",
        pairings.len()
    );

    let mut rng = Rng(seed);
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for n in 0..mutations {
        let (r, at, items, baseline) = &pairings[rng.below(pairings.len())];
        let mut quote = r.quote.clone();
        let mut collateral = items.clone();
        let mut edited_item = None;
        let edited_at = match rng.below(100) {
            // One byte anywhere.
            0..=59 => {
                let at = rng.below(quote.len());
                quote[at] ^= rng.flip();
                Some(at)
            }
            // One byte in the certification data's tail (the PEM chain on).
            60..=74 => {
                let start = regions(&quote).root.start.saturating_sub(2_000);
                let at = start + rng.below(quote.len() - start);
                quote[at] ^= rng.flip();
                Some(at)
            }
            // Truncated.
            75..=79 => {
                quote.truncate(rng.below(quote.len()));
                None
            }
            // Bytes appended.
            80..=84 => {
                let at = quote.len();
                quote.extend((0..1 + rng.below(16)).map(|_| rng.below(256) as u8));
                Some(at)
            }
            // One byte of one collateral item.
            _ => {
                let item = rng.below(collateral.len());
                let bytes = &mut collateral[item].1;
                let at = rng.below(bytes.len());
                let was = bytes[at];
                bytes[at] ^= rng.flip();
                edited_item = Some((item, at, was, bytes[at]));
                None
            }
        };
        let (we, they) = (
            ours(&verifier, &quote, &collateral, *at),
            oracle(&quote, &collateral, *at),
        );
        let class = match (&we, &they) {
            (Verdict::Refused(_), Verdict::Refused(_)) => "both refuse",
            (Verdict::Accepted(a), Verdict::Accepted(b)) if a == b => {
                "both accept, same TCB status"
            }
            (Verdict::Accepted(_), Verdict::Refused(why))
                if baseline.1 == Verdict::Refused(why.clone())
                    && matches!(baseline.0, Verdict::Accepted(_)) =>
            {
                "dcap-qvl's own policy"
            }
            (Verdict::Refused(_), Verdict::Accepted(_)) if edited_at.is_some() => {
                stricter_class(&r.quote, edited_at).unwrap_or("UNEXPLAINED")
            }
            // An edit in the root at the end of a collateral issuer chain:
            // we refuse a root that is not the pinned one byte for byte, and
            // anchor at the pinned root when the block is no longer PEM
            // (where dcap-qvl, through this test's adapter, needs text).
            (Verdict::Refused(_), Verdict::Accepted(_))
            | (Verdict::Accepted(_), Verdict::Refused(_))
                if edited_item.is_some_and(|(i, at, _, _)| in_chain_root(&items[i], at)) =>
            {
                "embedded root (collateral issuer chain)"
            }
            // The PCK CRL issuer chain is informational: the CRL must be
            // signed by the CA that issued the quote's PCK, so we never read
            // it (dcap-qvl needs it to be text).
            (Verdict::Accepted(_), Verdict::Refused(_))
                if edited_item.is_some_and(|(i, ..)| items[i].0 == names::PCK_CRL_ISSUER_CHAIN) =>
            {
                "informational pck_crl_issuer_chain.pem"
            }
            _ => "UNEXPLAINED",
        };
        if class == "UNEXPLAINED" {
            let item = edited_item.map(|(i, at, was, now): (usize, usize, u8, u8)| {
                (collateral[i].0.clone(), at, was as char, now as char)
            });
            unexplained.push(format!(
                "#{n} {} at {edited_at:?} / {item:?}: we {we:?}, dcap-qvl {they:?}",
                r.id
            ));
        }
        *tally.entry(class).or_default() += 1;
    }
    common::assert_all_explained("TDX", mutations, seed, &tally, &unexplained);
}
