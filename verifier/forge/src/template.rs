//! Evidence templates: what is expensive to forge (certificate chains, CRLs,
//! TCB info, QE identity, the QE report) is made once; each nonce then costs
//! one signature by the key the hardware would use (the Nitro leaf, the
//! VCEK, the TDX attestation key), through aws-lc-rs rather than the
//! RustCrypto keys the chains are issued with.
//!
//! This is what lets the enclave-agent's simulator and the load generator
//! (`attest-gate-load`) produce evidence at a small fraction of a
//! verification's cost: forging a whole chain per document costs
//! milliseconds.
//!
//! A template dates its chains and collateral at the instant it was made
//! ([`Self::made_at`] on each): Nitro's leaf lives three hours, Intel's
//! collateral a month, so callers make a new one well before then.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use time::OffsetDateTime;

use crate::live;
use crate::nitro::{self, DocSpec, ForgeError};
use crate::pki::Chain;
use crate::snp::{self as snp_forge, ReportSpec};
use crate::tdx::{Collateral, TdxSpec, REPORT_DATA_OFFSET, TD10_BODY_LEN, TD15_BODY_LEN};

/// A signer for one test key, by aws-lc-rs.
struct FastKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl FastKey {
    fn new(alg: &'static EcdsaSigningAlgorithm, pkcs8: &[u8]) -> Result<Self, ForgeError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(|e| ForgeError::Key(e.to_string()))?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// `r ‖ s`, big-endian. An empty signature if the random generator
    /// fails (the evidence then simply does not verify).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default()
    }
}

/// Nitro: the chain and bundle made once; each document re-encoded with its
/// own `user_data`, `nonce`, `public_key` and timestamp, and signed once.
pub struct NitroTemplate {
    doc: DocSpec,
    chain: Chain,
    bundle: Vec<Vec<u8>>,
    leaf: FastKey,
    made_at: OffsetDateTime,
}

impl NitroTemplate {
    /// Documents like `doc`, under a test chain current at `at`.
    pub fn new(doc: DocSpec, at: OffsetDateTime) -> Result<Self, ForgeError> {
        let chain = nitro::chain_spec_at(at).issue()?;
        let leaf = FastKey::new(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &chain.leaf_key.pkcs8_der(),
        )?;
        Ok(Self {
            doc,
            bundle: nitro::bundle(&chain),
            chain,
            leaf,
            made_at: at,
        })
    }

    /// When its chain was made (the leaf lives three hours from then).
    pub fn made_at(&self) -> OffsetDateTime {
        self.made_at
    }

    /// A document carrying these fields, timestamped `at`.
    pub fn document(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
        at: OffsetDateTime,
    ) -> Result<Vec<u8>, ForgeError> {
        let mut doc = self.doc.clone();
        doc.user_data = user_data.map(<[u8]>::to_vec);
        doc.nonce = nonce.map(<[u8]>::to_vec);
        doc.public_key = public_key.map(<[u8]>::to_vec);
        doc.timestamp_ms = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or_default();
        doc.sign_with(&self.chain, &self.bundle, |tbs| self.leaf.sign(tbs))
    }
}

/// SEV-SNP: the report body and the VCEK chain made once; each report gets
/// its REPORT_DATA and one VCEK signature.
pub struct SnpTemplate {
    body: Vec<u8>,
    collateral: Collateral,
    vcek: FastKey,
}

/// Where REPORT_DATA sits in an SNP report.
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;

impl SnpTemplate {
    /// Reports like `report`, with the test VCEK and its chain.
    pub fn new(report: &ReportSpec) -> Result<Self, ForgeError> {
        let (_, collateral) = live::snp(report)?;
        let vcek = FastKey::new(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &snp_forge::vcek_key().pkcs8_der(),
        )?;
        Ok(Self {
            body: report.body(),
            collateral,
            vcek,
        })
    }

    /// The VCEK and its chain, as the agent sends them.
    pub fn collateral(&self) -> &Collateral {
        &self.collateral
    }

    /// A signed report carrying `report_data`.
    pub fn report(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let mut body = self.body.clone();
        if let Some(slot) = body.get_mut(SNP_REPORT_DATA) {
            slot.copy_from_slice(report_data);
        }
        snp_forge::sign_body_with(body, |signed| self.vcek.sign(signed))
    }
}

/// TDX: the quote (PCK chain, QE report and its signature) and collateral
/// made once; each quote gets its REPORT_DATA and one attestation-key
/// signature over header and TD report.
pub struct TdxTemplate {
    quote: Vec<u8>,
    collateral: Collateral,
    /// Where REPORT_DATA sits in the quote.
    report_data_at: usize,
    /// How many leading bytes the attestation key signs; its signature
    /// follows the signature-data length (4 bytes) after them.
    signed_len: usize,
    attestation_key: FastKey,
    made_at: OffsetDateTime,
}

impl TdxTemplate {
    /// Quotes like `spec`'s, with collateral current at `at` (for a month).
    pub fn new(spec: &TdxSpec, at: OffsetDateTime) -> Result<Self, ForgeError> {
        let (quote, collateral) = live::tdx(spec, at)?;
        let body_offset = spec.quote.body_offset();
        let body_len = if spec.quote.version == 5 {
            TD15_BODY_LEN
        } else {
            TD10_BODY_LEN
        };
        let attestation_key = FastKey::new(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &spec.quote.attestation_key().pkcs8_der(),
        )?;
        Ok(Self {
            quote,
            collateral,
            report_data_at: body_offset + REPORT_DATA_OFFSET,
            signed_len: body_offset + body_len,
            attestation_key,
            made_at: at,
        })
    }

    /// When its collateral was made (current for 29 days from then).
    pub fn made_at(&self) -> OffsetDateTime {
        self.made_at
    }

    /// The TCB info, QE identity, CRLs and chains, as the agent sends them.
    pub fn collateral(&self) -> &Collateral {
        &self.collateral
    }

    /// A signed quote carrying `report_data`.
    pub fn quote(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let mut quote = self.quote.clone();
        if let Some(slot) = quote.get_mut(self.report_data_at..self.report_data_at + 64) {
            slot.copy_from_slice(report_data);
        }
        let signature = self
            .attestation_key
            .sign(quote.get(..self.signed_len).unwrap_or_default());
        let at = self.signed_len + 4;
        if let Some(slot) = quote.get_mut(at..at + signature.len()) {
            slot.copy_from_slice(&signature);
        }
        quote
    }
}

/// Which hardware a [`Template`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    /// AWS Nitro Enclaves.
    Nitro,
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

/// A template for any of the three, with the default (example workload)
/// contents: what the agent's `--simulate` and the load generator use.
pub enum Template {
    /// Nitro documents (boxed: its chain is the largest).
    Nitro(Box<NitroTemplate>),
    /// SEV-SNP reports; when it was made.
    Snp(SnpTemplate, OffsetDateTime),
    /// TDX quotes.
    Tdx(TdxTemplate),
}

/// No collateral (Nitro's documents carry their chain).
const NO_COLLATERAL: &Collateral = &Vec::new();

impl Template {
    /// The default template for `hardware`, its chains current at `at`.
    pub fn new(hardware: Hardware, at: OffsetDateTime) -> Result<Self, ForgeError> {
        Ok(match hardware {
            Hardware::Nitro => Self::Nitro(Box::new(NitroTemplate::new(DocSpec::default(), at)?)),
            Hardware::Snp => Self::Snp(SnpTemplate::new(&ReportSpec::default())?, at),
            Hardware::Tdx => Self::Tdx(TdxTemplate::new(&TdxSpec::default(), at)?),
        })
    }

    /// Which hardware it stands for.
    pub fn hardware(&self) -> Hardware {
        match self {
            Self::Nitro(_) => Hardware::Nitro,
            Self::Snp(..) => Hardware::Snp,
            Self::Tdx(_) => Hardware::Tdx,
        }
    }

    /// When its chains and collateral were made.
    pub fn made_at(&self) -> OffsetDateTime {
        match self {
            Self::Nitro(t) => t.made_at(),
            Self::Snp(_, at) => *at,
            Self::Tdx(t) => t.made_at(),
        }
    }

    /// The collateral an agent sends with the evidence (none for Nitro).
    pub fn collateral(&self) -> &Collateral {
        match self {
            Self::Nitro(_) => NO_COLLATERAL,
            Self::Snp(t, _) => t.collateral(),
            Self::Tdx(t) => t.collateral(),
        }
    }

    /// Evidence carrying `report_data` (Nitro: as `user_data`, with `nonce`
    /// and `public_key` when given), dated `at` where the format has a date.
    pub fn evidence(
        &self,
        report_data: &[u8; 64],
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
        at: OffsetDateTime,
    ) -> Result<Vec<u8>, ForgeError> {
        Ok(match self {
            Self::Nitro(t) => t.document(Some(report_data), nonce, public_key, at)?,
            Self::Snp(t, _) => t.report(report_data),
            Self::Tdx(t) => t.quote(report_data),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tdx::QuoteSpec;

    fn data(byte: u8) -> [u8; 64] {
        [byte; 64]
    }

    /// A template's quote is the full forger's, but for the signature
    /// (ECDSA is randomised), and its signature verifies over the same
    /// bytes.
    #[test]
    fn a_tdx_template_quote_is_the_forged_quote_with_a_fresh_signature() {
        for quote in [QuoteSpec::valid(), QuoteSpec::v5()] {
            let at = nitro::FORGE_INSTANT;
            let mut spec = TdxSpec {
                quote,
                ..TdxSpec::default()
            };
            let template = TdxTemplate::new(&spec, at).unwrap();
            let fast = template.quote(&data(7));
            spec.quote.report_data = data(7);
            let (slow, collateral) = live::tdx(&spec, at).unwrap();
            assert_eq!(collateral, *template.collateral());
            let sig = template.signed_len + 4..template.signed_len + 68;
            assert_eq!(fast[..sig.start], slow[..sig.start]);
            assert_eq!(fast[sig.end..], slow[sig.end..]);
            let public = spec.quote.attestation_key();
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                public.public_point(),
            )
            .verify(&fast[..template.signed_len], &fast[sig])
            .unwrap();
        }
    }

    #[test]
    fn an_snp_template_report_is_the_forged_report_with_a_fresh_signature() {
        let spec = ReportSpec {
            report_data: data(9),
            ..ReportSpec::default()
        };
        let template = SnpTemplate::new(&ReportSpec::default()).unwrap();
        let fast = template.report(&data(9));
        let (slow, _) = live::snp(&spec).unwrap();
        assert_eq!(fast[..0x2a0], slow[..0x2a0]);
        assert_ne!(fast[0x2a0..], slow[0x2a0..]);
    }
}
