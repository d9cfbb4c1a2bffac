//! Processor products and their TCB_VERSION layouts.
//!
//! The layout depends on the processor, not on the report version: Milan and
//! Genoa put bootloader, TEE, SNP, microcode at bytes 0, 1, 6, 7; Turin adds
//! FMC and puts FMC, bootloader, TEE, SNP, microcode at bytes 0, 1, 2, 3, 7.

use std::fmt;

/// An AMD EPYC generation with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// 3rd generation (Zen 3).
    Milan,
    /// 4th generation (Zen 4), including Bergamo and Siena.
    Genoa,
    /// 5th generation (Zen 5).
    Turin,
}

impl Product {
    /// The name AMD uses in certificate subjects and KDS URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// From the report's CPUID family and model (reports of version ≥ 3),
    /// with the model ranges virtee/sev and trustee use.
    pub(crate) fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0f) => Some(Self::Milan),
            (0x19, 0x10..=0x1f | 0xa0..=0xaf) => Some(Self::Genoa),
            (0x1a, 0x00..=0x11) => Some(Self::Turin),
            _ => None,
        }
    }

    /// From an AMD CA subject common name: `SEV-<P>` (ASK), `SEV-VLEK-<P>` (ASVK), `ARK-<P>`.
    pub(crate) fn from_ca_name(cn: &str) -> Option<Self> {
        let name = cn
            .strip_prefix("SEV-VLEK-")
            .or_else(|| cn.strip_prefix("SEV-"))
            .or_else(|| cn.strip_prefix("ARK-"))?;
        [Self::Milan, Self::Genoa, Self::Turin]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded TCB_VERSION: the security patch level of each firmware component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcb {
    /// Firmware-measured component (Turin and later only).
    pub fmc: Option<u8>,
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
    /// The raw 64-bit value.
    pub raw: u64,
}

impl Tcb {
    /// Decodes `raw` with `product`'s layout.
    pub fn decode(raw: u64, product: Product) -> Self {
        let b = raw.to_le_bytes();
        match product {
            Product::Milan | Product::Genoa => Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                raw,
            },
            Product::Turin => Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
                raw,
            },
        }
    }

    /// Whether the bytes `product`'s layout reserves are zero: Milan and
    /// Genoa reserve bytes 2..6 (BOOT_LOADER, TEE, reserved, SNP,
    /// MICROCODE); Turin bytes 4..7 (FMC, BOOT_LOADER, TEE, SNP, reserved,
    /// MICROCODE).
    pub(crate) fn reserved_is_zero(raw: u64, product: Product) -> bool {
        let b = raw.to_le_bytes();
        let reserved = match product {
            Product::Milan | Product::Genoa => b.get(2..6),
            Product::Turin => b.get(4..7),
        };
        reserved.is_some_and(|r| r.iter().all(|x| *x == 0))
    }

    /// The components that an endorsement certificate certifies, by name.
    pub(crate) fn components(&self) -> Vec<(&'static str, u8)> {
        let mut out = vec![
            ("bootloader", self.bootloader),
            ("tee", self.tee),
            ("snp", self.snp),
            ("microcode", self.microcode),
        ];
        if let Some(fmc) = self.fmc {
            out.push(("fmc", fmc));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_differ_by_product() {
        // REPORTED_TCB of the AWS VLEK sample: bl 4, tee 0, snp 24, ucode 217.
        let raw = u64::from_le_bytes([0x04, 0x00, 0, 0, 0, 0, 0x18, 0xd9]);
        let milan = Tcb::decode(raw, Product::Milan);
        assert_eq!(
            (milan.bootloader, milan.tee, milan.snp, milan.microcode),
            (4, 0, 24, 217)
        );
        let turin = Tcb::decode(u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 9]), Product::Turin);
        assert_eq!(
            (
                turin.fmc,
                turin.bootloader,
                turin.tee,
                turin.snp,
                turin.microcode
            ),
            (Some(1), 2, 3, 4, 9)
        );
    }

    #[test]
    fn products_from_cpuid_and_names() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1a, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
        assert_eq!(
            Product::from_ca_name("SEV-VLEK-Milan"),
            Some(Product::Milan)
        );
        assert_eq!(Product::from_ca_name("ARK-Turin"), Some(Product::Turin));
        assert_eq!(Product::from_ca_name("SEV-Venice"), None);
    }
}
