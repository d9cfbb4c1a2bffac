//! Typed verification errors, each with a stable machine-readable code.
//!
//! One variant per distinct check, so that a test can assert *which* check
//! rejected the evidence. The codes are part of the CLI and HTTP contract:
//! never rename one; add new ones instead.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::claims::TeeKind;
use crate::code::{RejectionCode, VerifyCode};

/// Why evidence failed verification (authenticity), as opposed to appraisal.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes do not decode as the expected structure.
    #[error("malformed evidence: {what}")]
    Malformed {
        /// What could not be parsed, in words.
        what: String,
    },
    /// `--tee` named one TEE but the bytes are evidence for another.
    #[error("evidence looks like {detected} but {requested} was requested")]
    TeeMismatch {
        /// What the caller asked for.
        requested: TeeKind,
        /// What the bytes are.
        detected: TeeKind,
    },
    /// The signing algorithm is not the one the format mandates.
    #[error("unsupported signature algorithm {found}; {expected} is required")]
    UnsupportedAlgorithm {
        /// The algorithm found.
        found: String,
        /// The algorithm required.
        expected: &'static str,
    },
    /// The measurement digest function is not the one supported.
    #[error("unsupported digest {found:?}; {expected} is required")]
    UnsupportedDigest {
        /// The digest named in the evidence.
        found: String,
        /// The digest required.
        expected: &'static str,
    },
    /// A measurement register has a bad index or length.
    #[error("invalid PCR {index}: {reason}")]
    InvalidPcr {
        /// The register index as found (may be out of range).
        index: i128,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field is present but outside its allowed size or range.
    #[error("field {field} out of range: {reason}")]
    FieldOutOfRange {
        /// Field name as in the format's specification.
        field: &'static str,
        /// What bound was violated.
        reason: String,
    },
    /// The evidence signature does not verify under the signing certificate.
    #[error("evidence signature does not verify")]
    SignatureInvalid,
    /// The certificate chain does not end at a trusted, pinned root.
    #[error("certificate chain is not anchored at a trusted root: {reason}")]
    ChainUntrusted {
        /// Why, in words.
        reason: String,
    },
    /// No path could be built: an issuer certificate is missing.
    #[error("certificate chain is incomplete: no issuer found for a certificate")]
    ChainIncomplete,
    /// A certificate's signature does not verify under its issuer's key.
    #[error("a certificate in the chain is not signed by its issuer's key")]
    CertificateSignatureInvalid,
    /// A certificate had expired at the verification instant.
    #[error(
        "certificate expired: not valid after {}, verified at {}",
        rfc3339(not_after),
        rfc3339(at)
    )]
    CertificateExpired {
        /// The certificate's `notAfter`.
        not_after: OffsetDateTime,
        /// The instant of verification.
        at: OffsetDateTime,
    },
    /// A certificate was not yet valid at the verification instant.
    #[error(
        "certificate not yet valid: not valid before {}, verified at {}",
        rfc3339(not_before),
        rfc3339(at)
    )]
    CertificateNotYetValid {
        /// The certificate's `notBefore`.
        not_before: OffsetDateTime,
        /// The instant of verification.
        at: OffsetDateTime,
    },
    /// An issuing certificate lacks the CA basic constraint (or a leaf claims it).
    #[error("certificate basic constraints violated: {reason}")]
    BasicConstraintsViolated {
        /// Which constraint.
        reason: &'static str,
    },
    /// A certificate's key usage does not allow what it is used for.
    #[error("certificate key usage does not permit {needed}")]
    KeyUsageInvalid {
        /// The usage that was needed.
        needed: &'static str,
    },
    /// The evidence format version is not one this verifier supports.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// The processor product named by the evidence and by its certificates disagree.
    #[error("product mismatch: {reason}")]
    ProductMismatch {
        /// What disagrees.
        reason: String,
    },
    /// A TCB component certified by the endorsement key differs from the report's.
    #[error(
        "TCB mismatch: {component} is {reported} in the report but {certified} in the certificate"
    )]
    TcbMismatch {
        /// The component (bootloader, tee, snp, microcode, fmc).
        component: &'static str,
        /// The report's REPORTED_TCB value.
        reported: u8,
        /// The certificate's value.
        certified: u8,
    },
    /// The endorsement certificate's hardware ID is not the report's CHIP_ID.
    #[error("the endorsement certificate's hwID does not match the report's CHIP_ID")]
    ChipIdMismatch,
    /// The report says one signing key kind and the certificate is another.
    #[error("the report is signed by a {report} but the certificate is a {certificate}")]
    SigningKeyMismatch {
        /// What the report says.
        report: &'static str,
        /// What the certificate is.
        certificate: &'static str,
    },
    /// A certificate in the chain is listed on its issuer's revocation list.
    #[error("certificate {serial} is revoked")]
    CertificateRevoked {
        /// Serial number, hex.
        serial: String,
    },
    /// A revocation list is malformed, wrongly signed, or not current.
    #[error("revocation list unusable: {reason}")]
    CrlInvalid {
        /// Why.
        reason: String,
    },
    /// The quoting enclave's report is not signed by the PCK key.
    #[error("the QE report is not signed by the PCK certificate's key")]
    QeReportSignatureInvalid,
    /// The QE report does not bind the attestation key and QE authentication data.
    #[error("the QE report data does not bind the attestation key")]
    QeBindingInvalid,
    /// Collateral the evidence needs was not supplied.
    #[error("missing collateral: {what}")]
    CollateralMissing {
        /// What is missing.
        what: &'static str,
    },
    /// Signed collateral (TCB info, QE identity) does not verify under its signing certificate.
    #[error("{what} signature does not verify")]
    CollateralSignatureInvalid {
        /// Which collateral item.
        what: &'static str,
    },
    /// Signed collateral is outside its issueDate..nextUpdate window.
    #[error(
        "{what} is not current: valid {} .. {}, verified at {}",
        rfc3339(issued),
        rfc3339(next_update),
        rfc3339(at)
    )]
    CollateralExpired {
        /// Which collateral item.
        what: &'static str,
        /// Its issue date.
        issued: OffsetDateTime,
        /// Its next update.
        next_update: OffsetDateTime,
        /// The instant of verification.
        at: OffsetDateTime,
    },
    /// Collateral is authentic but is not for this platform or this kind of evidence.
    #[error("collateral does not apply: {reason}")]
    CollateralMismatch {
        /// What disagrees.
        reason: String,
    },
    /// The quoting enclave is not the one Intel's QE identity describes.
    #[error("the quoting enclave does not match its identity: {field} differs")]
    QeIdentityMismatch {
        /// The field (under its mask) that differs.
        field: &'static str,
    },
    /// The TDX module (MRSIGNERSEAM, SEAM attributes) is not the one the TCB info describes.
    #[error("the TDX module does not match the TCB info: {field} differs")]
    TdxModuleMismatch {
        /// The field that differs.
        field: &'static str,
    },
    /// No TCB level of the collateral applies to the platform's SVNs.
    #[error("no {what} TCB level matches the platform")]
    NoMatchingTcbLevel {
        /// platform, QE or TDX module.
        what: &'static str,
    },
    /// Any other certificate defect found during path validation.
    #[error("certificate invalid: {reason}")]
    CertificateInvalid {
        /// The validator's description.
        reason: String,
    },
}

impl VerifyError {
    /// The stable, documented identifier of this failure.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Which check failed, as a code enum.
    pub fn kind(&self) -> VerifyCode {
        use VerifyCode as C;
        match self {
            Self::Malformed { .. } => C::MalformedEvidence,
            Self::TeeMismatch { .. } => C::TeeMismatch,
            Self::UnsupportedAlgorithm { .. } => C::UnsupportedAlgorithm,
            Self::UnsupportedDigest { .. } => C::UnsupportedDigest,
            Self::InvalidPcr { .. } => C::InvalidPcr,
            Self::FieldOutOfRange { .. } => C::FieldOutOfRange,
            Self::SignatureInvalid => C::SignatureInvalid,
            Self::ChainUntrusted { .. } => C::ChainUntrusted,
            Self::ChainIncomplete => C::ChainIncomplete,
            Self::CertificateSignatureInvalid => C::CertificateSignatureInvalid,
            Self::CertificateExpired { .. } => C::CertificateExpired,
            Self::CertificateNotYetValid { .. } => C::CertificateNotYetValid,
            Self::BasicConstraintsViolated { .. } => C::BasicConstraintsViolated,
            Self::KeyUsageInvalid { .. } => C::KeyUsageInvalid,
            Self::CertificateInvalid { .. } => C::CertificateInvalid,
            Self::UnsupportedVersion { .. } => C::UnsupportedVersion,
            Self::ProductMismatch { .. } => C::ProductMismatch,
            Self::TcbMismatch { .. } => C::TcbMismatch,
            Self::ChipIdMismatch => C::ChipIdMismatch,
            Self::SigningKeyMismatch { .. } => C::SigningKeyMismatch,
            Self::CertificateRevoked { .. } => C::CertificateRevoked,
            Self::CrlInvalid { .. } => C::CrlInvalid,
            Self::CollateralMissing { .. } => C::CollateralMissing,
            Self::QeReportSignatureInvalid => C::QeReportSignatureInvalid,
            Self::QeBindingInvalid => C::QeBindingInvalid,
            Self::CollateralSignatureInvalid { .. } => C::CollateralSignatureInvalid,
            Self::CollateralExpired { .. } => C::CollateralExpired,
            Self::CollateralMismatch { .. } => C::CollateralMismatch,
            Self::QeIdentityMismatch { .. } => C::QeIdentityMismatch,
            Self::TdxModuleMismatch { .. } => C::TdxModuleMismatch,
            Self::NoMatchingTcbLevel { .. } => C::NoMatchingTcbLevel,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed { what: what.into() }
    }
}

/// Why verified evidence was rejected by appraisal (policy over claims).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The TEE runs in debug mode and the policy does not allow it.
    #[error("the TEE is in debug mode, which the policy denies")]
    DebugEnclave,
    /// The evidence's nonce differs from the expected one.
    #[error("nonce does not match the expected value")]
    NonceMismatch,
    /// The evidence's report data differs from the expected value.
    #[error("report data does not match the expected value")]
    ReportDataMismatch,
    /// The evidence does not bind the challenge nonce, the agent's key and its model.
    #[error("the evidence's {field} does not bind this nonce, key and model")]
    BindingMismatch {
        /// The evidence field that differs.
        field: &'static str,
    },
    /// No allowed workload has these measurements.
    #[error("no allowed workload has these measurements")]
    MeasurementNotAllowed,
    /// The workload may not serve this model.
    #[error("the model digest is not allowed for this workload")]
    ModelNotAllowed,
    /// A TCB component is below the workload's minimum.
    #[error("{component} is {have}, below the workload's minimum {minimum}")]
    TcbBelowMinimum {
        /// The component.
        component: &'static str,
        /// Its value.
        have: u32,
        /// The bound.
        minimum: u32,
    },
    /// SEV-SNP: the report's VMPL is above the workload's maximum.
    #[error("VMPL {have} is above the workload's maximum {maximum}")]
    VmplAboveMaximum {
        /// The report's VMPL.
        have: u32,
        /// The workload's `max_vmpl`.
        maximum: u32,
    },
    /// The platform's TCB status is not among the accepted ones.
    #[error("TCB status {status} is not accepted by the policy")]
    TcbStatusNotAccepted {
        /// The status the evidence reported.
        status: String,
    },
}

impl Rejection {
    /// The stable, documented identifier of this rejection.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Which appraisal check failed, as a code enum.
    pub fn kind(&self) -> RejectionCode {
        use RejectionCode as C;
        match self {
            Self::DebugEnclave => C::DebugEnclave,
            Self::NonceMismatch => C::NonceMismatch,
            Self::ReportDataMismatch => C::ReportDataMismatch,
            Self::TcbStatusNotAccepted { .. } => C::TcbStatusNotAccepted,
            Self::BindingMismatch { .. } => C::BindingMismatch,
            Self::MeasurementNotAllowed => C::MeasurementNotAllowed,
            Self::ModelNotAllowed => C::ModelNotAllowed,
            Self::TcbBelowMinimum { .. } => C::TcbBelowMinimum,
            Self::VmplAboveMaximum { .. } => C::VmplAboveMaximum,
        }
    }
}

/// RFC 3339 for messages; falls back to the Unix timestamp.
fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
