//! Simulated agents: each has its own P-256 key; evidence comes from
//! templates made once (chains, collateral), so each round trip costs the
//! generator one evidence signature and, for DPoP, one proof signature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use attest_gate_core::{AgentKey, Binding, ModelDigest, TeeKind};
use attest_gate_forge::template::{Hardware, Template};
use attest_gate_protocol::dpop::{make_proof, ProofClaims};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The example model every `measurements/` example workload allows.
const EXAMPLE_MODEL: &[u8] = include_bytes!("../../../testdata/models/example-model.txt");
/// What every example workload grants.
pub(crate) const AUDIENCE: &str = "https://rp.attest-gate.test";
const SCOPES: [&str; 2] = ["inference:invoke", "tools:search"];

/// The example model's digest.
pub(crate) fn example_model() -> ModelDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, EXAMPLE_MODEL);
    let mut bytes = [0u8; 48];
    bytes.copy_from_slice(digest.as_ref());
    ModelDigest(bytes)
}

/// One agent key (the generator runs `--keys` of them).
pub(crate) struct Agent {
    pair: EcdsaKeyPair,
    /// Its public key as the API carries it.
    pub jwk: AgentKey,
    /// The same, serialised.
    jwk_json: String,
    rng: SystemRandom,
}

impl Agent {
    /// A fresh random key.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("key generation failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow!("key unreadable"))?;
        let point = pair.public_key().as_ref();
        let coordinate = |range: std::ops::Range<usize>| -> anyhow::Result<[u8; 32]> {
            point
                .get(range)
                .and_then(|c| c.try_into().ok())
                .context("unexpected public key encoding")
        };
        let jwk = AgentKey::P256 {
            x: coordinate(1..33)?,
            y: coordinate(33..65)?,
        };
        let jwk_json = jwk.to_jwk().to_string();
        Ok(Self {
            pair,
            jwk,
            jwk_json,
            rng,
        })
    }

    /// A DPoP proof for `htm htu`, with `token`'s hash and the server's
    /// `nonce` when given.
    pub(crate) fn proof(
        &self,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .map_err(|_| anyhow!("random generator failed"))?;
        let jti = hex::encode(id);
        let claims = ProofClaims {
            htm,
            htu,
            access_token: token,
            nonce,
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            jti: &jti,
        };
        make_proof(&self.jwk, &claims, |message| {
            self.pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing failed")
        })
        .map_err(|e| anyhow!("making a DPoP proof: {e:?}"))
    }
}

/// Evidence for one TEE, from a template, and its collateral already in the
/// request's form (encoded once, not per request).
pub(crate) struct Simulator {
    template: Template,
    /// The request's unchanging fields, serialised.
    fixed: String,
}

impl Simulator {
    /// A simulator for `tee`, its chains current at `now`; its requests
    /// carry the collateral unless `served` (the verifier has it in its
    /// collateral folder: [`Simulator::folder_files`]).
    pub(crate) fn new(tee: TeeKind, now: OffsetDateTime, served: bool) -> anyhow::Result<Self> {
        let hardware = match tee {
            TeeKind::Nitro => Hardware::Nitro,
            TeeKind::Snp => Hardware::Snp,
            TeeKind::Tdx => Hardware::Tdx,
        };
        let template = Template::new(hardware, now)?;
        let files = template.collateral();
        let collateral: BTreeMap<&str, String> = files
            .iter()
            .filter(|_| !served)
            .map(|(name, bytes)| (name.as_str(), STANDARD.encode(bytes)))
            .collect();
        let fixed = Self::fixed_fields(tee, &json!(collateral));
        Ok(Self { template, fixed })
    }

    /// TDX collateral as a verifier's collateral folder holds it (relative
    /// paths: TCB info under `tdx/<fmspc>/`, the rest in `tdx/`), so that
    /// requests need not carry it, as a deployment's agents do not when the
    /// verifier has its own source.
    pub(crate) fn folder_files(
        &self,
        now: OffsetDateTime,
    ) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
        let quote = self.template.evidence(&[0u8; 64], None, None, now)?;
        let (fmspc, _) = attest_gate_core::tdx::unverified_pck_lookup(&quote)
            .map_err(|e| anyhow!("the template's quote names no platform: {e}"))?;
        let shared = PathBuf::from("tdx");
        let keyed = shared.join(hex::encode(fmspc));
        Ok(self
            .template
            .collateral()
            .iter()
            .map(|(name, bytes)| {
                let dir = if name.starts_with("tcb_info") {
                    &keyed
                } else {
                    &shared
                };
                (dir.join(name), bytes.to_vec())
            })
            .collect())
    }

    /// The `POST /v1/attest` body for `agent` on `nonce`, as JSON bytes.
    /// Everything but the nonce, the key and the evidence is serialised
    /// once ([`Self::fixed_fields`]); those three are base64 and a JWK, so
    /// they are spliced in without escaping.
    pub(crate) fn attest_request(&self, agent: &Agent, nonce: &[u8]) -> anyhow::Result<Vec<u8>> {
        let binding =
            Binding::new(nonce, agent.jwk.clone(), example_model()).context("nonce too long")?;
        let report_data = binding.report_data();
        // As the verifier's tests send Nitro documents: the binding in
        // `user_data`, no nonce or key fields.
        let evidence =
            self.template
                .evidence(&report_data, None, None, OffsetDateTime::now_utc())?;
        let evidence = STANDARD.encode(evidence);
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let mut body = Vec::with_capacity(self.fixed.len() + evidence.len() + 256);
        body.extend_from_slice(self.fixed.as_bytes());
        for part in [
            ",\"nonce\":\"",
            &nonce,
            "\",\"public_key\":",
            &agent.jwk_json,
            ",\"evidence\":\"",
            &evidence,
            "\"}",
        ] {
            body.extend_from_slice(part.as_bytes());
        }
        Ok(body)
    }

    /// The request's fields that do not change, as an unclosed JSON object.
    fn fixed_fields(tee: TeeKind, collateral: &Value) -> String {
        let fixed = json!({
            "tee": tee.to_string(),
            "collateral": collateral,
            "model_digest": example_model().to_hex(),
            "principal": "system",
            "intent": {
                "task_id": "load",
                "scopes": SCOPES,
                "audience": AUDIENCE,
            },
        })
        .to_string();
        fixed.strip_suffix('}').unwrap_or(&fixed).to_string()
    }
}

/// The `POST /v1/token/exchange` body delegating `token` to `actor`.
pub(crate) fn exchange_request(token: &str, actor: &Agent) -> Value {
    json!({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "actor_key": actor.jwk.to_jwk(),
        "scope": SCOPES[0],
        "audience": AUDIENCE,
        "purpose": "load-subagent",
    })
}
