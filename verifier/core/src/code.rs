//! The stable codes of verification and appraisal failures, as field-less
//! enums: one list that the CLI, the service, the error-code page and its
//! test all read, so a code cannot exist in one and not the others.

/// Declares a field-less code enum with its wire string and a one-line
/// description of what triggers it, and the complete list `ALL`.
macro_rules! codes {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($variant:ident => $code:literal, $trigger:literal;)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = $trigger] $variant,)*
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The stable identifier (never renamed; new codes are added instead).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// What triggers it, in one sentence.
            pub fn trigger(self) -> &'static str {
                match self {
                    $(Self::$variant => $trigger,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Why evidence failed verification (authenticity): the code of a
    /// [`crate::VerifyError`].
    pub enum VerifyCode {
        MalformedEvidence => "malformed_evidence", "The evidence bytes do not decode as the format's structure (or have bytes left over).";
        TeeMismatch => "tee_mismatch", "The TEE named by the caller differs from the one the bytes are evidence for.";
        UnsupportedAlgorithm => "unsupported_algorithm", "The evidence is signed with an algorithm other than the one its format mandates.";
        UnsupportedDigest => "unsupported_digest", "The measurement digest is not the one supported (Nitro: SHA384).";
        InvalidPcr => "invalid_pcr", "A measurement register has a bad index or length.";
        FieldOutOfRange => "field_out_of_range", "A field is present but outside its allowed size or range, or a must-be-zero field is not zero.";
        SignatureInvalid => "signature_invalid", "The evidence's own signature does not verify under its certificate.";
        ChainUntrusted => "chain_untrusted", "The certificate chain does not end at a pinned vendor root (or, with test roots, a configured one).";
        ChainIncomplete => "chain_incomplete", "No issuer was found for a certificate in the chain.";
        CertificateSignatureInvalid => "certificate_signature_invalid", "A certificate is not signed by its issuer's key.";
        CertificateExpired => "certificate_expired", "A certificate in the chain is past its notAfter at the verification instant.";
        CertificateNotYetValid => "certificate_not_yet_valid", "A certificate in the chain is before its notBefore at the verification instant.";
        BasicConstraintsViolated => "basic_constraints_violated", "A certificate's basic constraints (CA flag, path length) forbid its place in the chain.";
        KeyUsageInvalid => "key_usage_invalid", "A certificate's key usage does not permit what it is used for (certificate or evidence signing).";
        CertificateInvalid => "certificate_invalid", "Path validation found another certificate defect.";
        UnsupportedVersion => "unsupported_version", "The report, quote or certificate-table version is not one this verifier reads.";
        ProductMismatch => "product_mismatch", "SEV-SNP: the chip's product line differs from the endorsement chain's.";
        TcbMismatch => "tcb_mismatch", "SEV-SNP: the report's reported TCB differs from the one certified in the VCEK.";
        ChipIdMismatch => "chip_id_mismatch", "SEV-SNP: the VCEK's hwID differs from the report's CHIP_ID.";
        SigningKeyMismatch => "signing_key_mismatch", "SEV-SNP: the report says VCEK but a VLEK was given, or the reverse.";
        CertificateRevoked => "certificate_revoked", "A certificate in the chain is on its issuer's revocation list.";
        CrlInvalid => "crl_invalid", "A revocation list is unsigned by its issuer, outside its window or unparsable.";
        CollateralMissing => "collateral_missing", "A piece of collateral that verification needs (TCB info, QE identity, CRL, VCEK) was not supplied.";
        QeReportSignatureInvalid => "qe_report_signature_invalid", "TDX: the Quoting Enclave report is not signed by the PCK certificate's key.";
        QeBindingInvalid => "qe_binding_invalid", "TDX: the QE report data does not bind the quote's attestation key.";
        CollateralSignatureInvalid => "collateral_signature_invalid", "TDX: the TCB info or QE identity signature does not verify under the TCB signing chain.";
        CollateralExpired => "collateral_expired", "Collateral is outside its issue date .. nextUpdate window at the verification instant.";
        CollateralMismatch => "collateral_mismatch", "Collateral is for another platform (FMSPC, PCE ID, chip) or of the wrong kind.";
        QeIdentityMismatch => "qe_identity_mismatch", "TDX: the Quoting Enclave does not match Intel's QE identity.";
        TdxModuleMismatch => "tdx_module_mismatch", "TDX: the TDX module does not match the TCB info's module identities.";
        NoMatchingTcbLevel => "no_matching_tcb_level", "No TCB level in the collateral matches the platform's components.";
    }
}

codes! {
    /// Why authentic evidence was rejected by appraisal: the code of a
    /// [`crate::Rejection`].
    pub enum RejectionCode {
        DebugEnclave => "debug_enclave", "The TEE runs in debug mode and the policy does not allow it.";
        NonceMismatch => "nonce_mismatch", "The evidence's nonce differs from the expected one (CLI `--nonce`).";
        ReportDataMismatch => "report_data_mismatch", "The evidence's report data differs from the expected value (CLI `--report-data`).";
        TcbStatusNotAccepted => "tcb_status_not_accepted", "The platform's TCB status is not among the accepted ones.";
        BindingMismatch => "binding_mismatch", "The evidence does not bind the challenge nonce, the agent's key and its model.";
        MeasurementNotAllowed => "measurement_not_allowed", "No workload in measurements/ has these measurements.";
        ModelNotAllowed => "model_not_allowed", "The workload may not serve this model digest.";
        TcbBelowMinimum => "tcb_below_minimum", "A TCB component is below the workload's minimum.";
        VmplAboveMaximum => "vmpl_above_maximum", "SEV-SNP: the report's VMPL is above the workload's maximum.";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        let all = VerifyCode::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(RejectionCode::ALL.iter().map(|c| c.as_str()));
        for code in all {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(seen.insert(code), "{code} twice");
        }
    }
}
