//! Intel's TCB-level matching for TDX, as the DCAP Quote Verification
//! Library does it: the platform level (SGX components and PCESVN from the
//! PCK certificate, TDX components from TEE_TCB_SVN), the TDX module
//! identity, and the QE identity, converged into one status.

use crate::claims::TcbStatus;
use crate::error::VerifyError;

use super::abi::QeReport;
use super::abi::TdReport;
use super::collateral::{Level, ModuleIdentity, PlatformTcb, QeIdentity, TcbInfo};
use super::pck::PckExtension;

/// The outcome of matching, with each part kept for the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcbVerdict {
    /// The converged status.
    pub(crate) status: TcbStatus,
    /// Advisory IDs of every matched level, in order, without repeats.
    pub(crate) advisory_ids: Vec<String>,
    /// The platform level's own status.
    pub(crate) platform_status: TcbStatus,
    /// The TDX module identity's status, when one was evaluated.
    pub(crate) module_status: Option<TcbStatus>,
    /// The QE's status.
    pub(crate) qe_status: TcbStatus,
    /// The matched platform level's TCB date.
    pub(crate) tcb_date: time::OffsetDateTime,
}

/// `a >= b` component-wise.
fn all_at_least(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(a, b)| a >= b)
}

/// The first (highest) platform level the PCK certificate and TEE_TCB_SVN reach.
///
/// Intel's rule that trips implementations: when TEE_TCB_SVN[1] (the TDX
/// module's major version) is non-zero, the first two TDX components describe
/// the module, which is judged by its identity `TDX_<nn>` instead
/// ([`module_level`] requires one), so comparison starts at index 2.
fn platform_level<'a>(
    info: &'a TcbInfo,
    pck: &PckExtension,
    tee_tcb_svn: &[u8; 16],
) -> Result<&'a Level<PlatformTcb>, VerifyError> {
    let from = if module_version(tee_tcb_svn).is_some() {
        2
    } else {
        0
    };
    info.levels
        .iter()
        .find(|level| {
            all_at_least(&pck.sgx_components, &level.tcb.sgx)
                && pck.pce_svn >= level.tcb.pce_svn
                && all_at_least(
                    tee_tcb_svn.get(from..).unwrap_or_default(),
                    level.tcb.tdx.get(from..).unwrap_or_default(),
                )
        })
        .ok_or(VerifyError::NoMatchingTcbLevel { what: "platform" })
}

/// TEE_TCB_SVN[1] when it selects a module identity (non-zero).
fn module_version(tee_tcb_svn: &[u8; 16]) -> Option<u8> {
    match tee_tcb_svn {
        [_, version, ..] if *version > 0 => Some(*version),
        _ => None,
    }
}

/// Checks the module's signer and attributes against `identity`.
fn check_module(identity: &ModuleIdentity, report: &TdReport) -> Result<(), VerifyError> {
    if identity.mrsigner != report.mr_signer_seam {
        return Err(VerifyError::TdxModuleMismatch {
            field: "MRSIGNERSEAM",
        });
    }
    let masked = report
        .seam_attributes
        .iter()
        .zip(identity.attributes_mask)
        .map(|(a, m)| a & m);
    if !masked.eq(identity.attributes) {
        return Err(VerifyError::TdxModuleMismatch {
            field: "SEAMATTRIBUTES",
        });
    }
    Ok(())
}

/// The TDX module's own level, when TEE_TCB_SVN selects a module identity;
/// otherwise only the base `tdxModule` signer and attributes are checked.
fn module_level<'a>(
    info: &'a TcbInfo,
    report: &TdReport,
) -> Result<Option<&'a Level<u8>>, VerifyError> {
    let Some(version) = module_version(&report.tee_tcb_svn) else {
        check_module(&info.tdx_module, report)?;
        return Ok(None);
    };
    let id = format!("TDX_{version:02X}");
    let identity = info
        .module_identities
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(&id))
        .ok_or(VerifyError::TdxModuleMismatch {
            field: "module identity (no TDX_<TEE_TCB_SVN[1]> in the TCB info)",
        })?;
    check_module(identity, report)?;
    let isv_svn = report.tee_tcb_svn[0];
    identity
        .levels
        .iter()
        .find(|level| isv_svn >= level.tcb)
        .map(Some)
        .ok_or(VerifyError::NoMatchingTcbLevel { what: "TDX module" })
}

/// The QE's level, after its identity (under the masks) has matched.
pub(crate) fn qe_level<'a>(
    identity: &'a QeIdentity,
    qe: &QeReport,
) -> Result<&'a Level<u16>, VerifyError> {
    if qe.miscselect & identity.miscselect_mask != identity.miscselect {
        return Err(VerifyError::QeIdentityMismatch {
            field: "MISCSELECT",
        });
    }
    let masked = qe
        .attributes
        .iter()
        .zip(identity.attributes_mask)
        .map(|(a, m)| a & m);
    if !masked.eq(identity.attributes) {
        return Err(VerifyError::QeIdentityMismatch {
            field: "ATTRIBUTES",
        });
    }
    if qe.mrsigner != identity.mrsigner {
        return Err(VerifyError::QeIdentityMismatch { field: "MRSIGNER" });
    }
    if qe.isv_prod_id != identity.isv_prod_id {
        return Err(VerifyError::QeIdentityMismatch { field: "ISVPRODID" });
    }
    identity
        .levels
        .iter()
        .find(|level| qe.isv_svn >= level.tcb)
        .ok_or(VerifyError::NoMatchingTcbLevel { what: "QE" })
}

/// Intel's convergence: a component that is out of date or revoked drags
/// the platform's status down; otherwise the platform's status stands.
fn converge(platform: TcbStatus, other: TcbStatus) -> TcbStatus {
    use TcbStatus::*;
    match (other, platform) {
        (Revoked, _) => Revoked,
        (OutOfDate | OutOfDateConfigurationNeeded, UpToDate | SwHardeningNeeded) => OutOfDate,
        (
            OutOfDate | OutOfDateConfigurationNeeded,
            ConfigurationNeeded | ConfigurationAndSwHardeningNeeded,
        ) => OutOfDateConfigurationNeeded,
        _ => platform,
    }
}

/// Matches the platform, the TDX module and the QE; returns the converged status.
pub(crate) fn evaluate(
    info: &TcbInfo,
    identity: &QeIdentity,
    pck: &PckExtension,
    report: &TdReport,
    qe: &QeReport,
) -> Result<TcbVerdict, VerifyError> {
    let qe_level = qe_level(identity, qe)?;
    let module = module_level(info, report)?;
    let platform = platform_level(info, pck, &report.tee_tcb_svn)?;

    let mut status = platform.status;
    if let Some(module) = module {
        status = converge(status, module.status);
    }
    status = converge(status, qe_level.status);

    let mut advisory_ids: Vec<String> = Vec::new();
    let lists = [
        Some(&platform.advisory_ids),
        module.map(|m| &m.advisory_ids),
        Some(&qe_level.advisory_ids),
    ];
    for id in lists.into_iter().flatten().flatten() {
        if !advisory_ids.contains(id) {
            advisory_ids.push(id.clone());
        }
    }
    Ok(TcbVerdict {
        status,
        advisory_ids,
        platform_status: platform.status,
        module_status: module.map(|m| m.status),
        qe_status: qe_level.status,
        tcb_date: platform.date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcbStatus::*;

    #[test]
    fn convergence_follows_intel() {
        assert_eq!(converge(UpToDate, UpToDate), UpToDate);
        assert_eq!(converge(SwHardeningNeeded, UpToDate), SwHardeningNeeded);
        assert_eq!(converge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge(SwHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            converge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(converge(UpToDate, Revoked), Revoked);
        assert_eq!(converge(OutOfDate, UpToDate), OutOfDate);
        assert_eq!(converge(Revoked, OutOfDate), Revoked);
    }
}
