//! Collateral: the named files (certificates, CRLs, TCB info...) that some
//! TEEs need to verify offline. The names are those of the `--collateral`
//! folder and of an evidence bundle's `collateral` map; reading the folder is
//! the caller's job (this crate does no I/O).

use std::collections::BTreeMap;

/// Named collateral items, by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collateral {
    items: BTreeMap<String, Vec<u8>>,
}

impl Collateral {
    /// No collateral.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Collateral from (file name, bytes) pairs.
    pub fn from_items(items: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// The item with this file name, if present.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.items.get(name).map(Vec::as_slice)
    }

    /// Every item, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.items.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
