//! The collateral file names (those of Intel PCS responses): the one place
//! the verifier, the collateral importer and the CLI agree on what each
//! collateral item is called.

/// PCS TCB info response.
pub const TCB_INFO: &str = "tcb_info.json";
/// Its issuer chain (TCB signing certificate, root).
pub const TCB_INFO_ISSUER_CHAIN: &str = "tcb_info_issuer_chain.pem";
/// PCS QE identity response.
pub const QE_IDENTITY: &str = "qe_identity.json";
/// Its issuer chain.
pub const QE_IDENTITY_ISSUER_CHAIN: &str = "qe_identity_issuer_chain.pem";
/// The PCK CRL (DER or PEM).
pub const PCK_CRL: &str = "pck_crl.der";
/// Its issuer chain (informational: the CA that issued the PCK is used).
pub const PCK_CRL_ISSUER_CHAIN: &str = "pck_crl_issuer_chain.pem";
/// The root CA CRL (DER or PEM).
pub const ROOT_CA_CRL: &str = "root_ca_crl.der";
/// Every name, in a stable order.
pub const ALL: [&str; 7] = [
    TCB_INFO,
    TCB_INFO_ISSUER_CHAIN,
    QE_IDENTITY,
    QE_IDENTITY_ISSUER_CHAIN,
    PCK_CRL,
    PCK_CRL_ISSUER_CHAIN,
    ROOT_CA_CRL,
];
