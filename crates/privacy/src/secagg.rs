//! Secure aggregation (Bonawitz et al., CCS 2017): the hub learns the sum of the sites' vectors
//! and nothing about any one of them, even when some sites drop out mid-round.
//!
//! ```text
//!  round 0  advertise     site → hub → all   two X25519 public keys (mask key, share key)
//!  round 1  share keys    site → hub → site  Shamir t-of-n shares of the site's self-mask seed b
//!                                            and mask secret key s, and the site's group-token
//!                                            seed, each encrypted for its recipient (X25519 +
//!                                            HKDF + ChaCha20-Poly1305): the hub relays
//!                                            ciphertexts it cannot read
//!           open          site               opens its inbox; the sites now share a token key
//!                                            the hub does not have ([`Participant::token_key`])
//!  round 2  masked input  site → hub         y = x + PRG(b) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv)
//!                                            (mod 2^64); pairwise masks cancel in the sum
//!  round 3  unmask        site → hub         for each survivor a share of b, for each site that
//!                                            dropped after round 1 a share of s; never both
//!                                            for the same site
//! ```
//! The hub recombines t shares to remove the survivors' self masks and the dropped sites'
//! pairwise masks, and is left with Σ x exactly. Arithmetic is in the ring Z/2^64: integers
//! (counts, sums of integers) are exact; reals use [`encode_fixed`] (2^-[`FRACTION_BITS`]
//! resolution, |sum| < 2^39). All primitives come from RustCrypto/dalek crates and `vsss-rs`.
//!
//! ```
//! use medfed_privacy::secagg::{Aggregator, Participant};
//! let n = 3u8;
//! let mut sites: Vec<Participant> = (1..=n).map(|id| Participant::new(id, 3, 2)).collect();
//! let ads: Vec<_> = sites.iter().map(|p| p.advertise()).collect();
//! let mut hub = Aggregator::new(2, ads.clone(), 2).unwrap();
//! let mut mail = Vec::new();
//! for s in &mut sites { mail.extend(s.share_keys(&ads).unwrap()); }
//! let inbox = hub.route(mail);
//! for (s, x) in sites.iter_mut().zip([[1u64, 2], [10, 20], [100, 200]]) {
//!     s.open(inbox[&s.id()].clone()).unwrap();
//!     let masked = s.masked_input(&x).unwrap();
//!     hub.add_masked(masked).unwrap();
//! }
//! let request = hub.unmask_request();
//! let answers: Vec<_> = sites.iter().map(|s| s.unmask(&request).unwrap()).collect();
//! assert_eq!(hub.finish(answers).unwrap(), vec![111, 222]);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vsss_rs::Gf256;
use x25519_dalek::{PublicKey, StaticSecret};

pub mod cells;

/// Fraction bits of the fixed-point encoding of reals.
pub const FRACTION_BITS: u32 = 24;

/// A site's index in a round, 1..=n (also its Shamir share id).
pub type Id = u8;

/// What can go wrong in a round.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecAggError {
    /// A message is malformed, misaddressed or fails authentication.
    #[error("secure aggregation: {0}")]
    Protocol(String),
    /// Fewer than t sites are left: the sum cannot (and must not) be recovered.
    #[error("secure aggregation: only {alive} site(s) left, the threshold is {threshold}")]
    TooFewSurvivors {
        /// Sites still in the round.
        alive: usize,
        /// Shares needed.
        threshold: usize,
    },
}

fn protocol(msg: impl Into<String>) -> SecAggError {
    SecAggError::Protocol(msg.into())
}

/// Encodes a real in the ring (two's complement fixed point).
pub fn encode_fixed(x: f64) -> u64 {
    (x * f64::from(1u32 << FRACTION_BITS)).round() as i64 as u64
}

/// Decodes a (summed) ring element back to a real.
pub fn decode_fixed(v: u64) -> f64 {
    v as i64 as f64 / f64::from(1u32 << FRACTION_BITS)
}

/// Round 0: a site's public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertisement {
    /// The site's id in the round.
    pub id: Id,
    /// X25519 key for pairwise masks.
    pub mask_key: [u8; 32],
    /// X25519 key for encrypting shares.
    pub share_key: [u8; 32],
}

/// Round 1: one site's shares for another, encrypted so only the recipient can read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedShares {
    /// Sender.
    pub from: Id,
    /// Recipient.
    pub to: Id,
    /// ChaCha20-Poly1305 ciphertext of the share of b, the share of s and the sender's
    /// group-token seed.
    pub ciphertext: Vec<u8>,
}

/// Round 2: a site's masked vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    /// Sender.
    pub from: Id,
    /// x + masks, mod 2^64.
    pub values: Vec<u64>,
}

/// Round 3, hub → sites: who survived and who dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    /// Sites whose masked input arrived.
    pub survivors: Vec<Id>,
    /// Sites that shared keys but sent no masked input.
    pub dropped: Vec<Id>,
}

/// Round 3, site → hub: shares that let the hub strip the masks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskShares {
    /// Sender.
    pub from: Id,
    /// For each survivor, this site's share of its self-mask seed.
    pub seed_shares: BTreeMap<Id, Vec<u8>>,
    /// For each dropped site, this site's share of its mask secret key.
    pub key_shares: BTreeMap<Id, Vec<u8>>,
}

/// The hub-side or site-side key for a pair, stretched into `len` ring elements and added
/// (`sign` = +1) or subtracted into `acc`.
fn apply_prg(seed: &[u8; 32], label: &[u8], acc: &mut [u64], add: bool) {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, seed)
        .expand(label, &mut key)
        .expect("32 bytes is a valid HKDF length");
    let mut cipher = ChaCha20::new(&key.into(), &[0u8; 12].into());
    let mut buf = [0u8; 8 * 1024];
    for chunk in acc.chunks_mut(1024) {
        let bytes = &mut buf[..chunk.len() * 8];
        bytes.fill(0);
        cipher.apply_keystream(bytes);
        for (a, w) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
            let r = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            *a = if add {
                a.wrapping_add(r)
            } else {
                a.wrapping_sub(r)
            };
        }
    }
}

const SELF_MASK: &[u8] = b"medfed secagg v1 self mask";
const PAIR_MASK: &[u8] = b"medfed secagg v1 pair mask";
const SHARE_KEY: &[u8] = b"medfed secagg v1 share encryption";
const TOKEN_KEY: &[u8] = b"medfed secagg v1 group token key";

/// What one site seals for another in round 1.
#[derive(Serialize, Deserialize)]
struct Sealed {
    seed_share: Vec<u8>,
    key_share: Vec<u8>,
    token_seed: [u8; 32],
}

/// The pairwise mask seed of `mine` and `theirs` (same value from both ends).
fn pair_seed(mine: &StaticSecret, theirs: &[u8; 32]) -> Result<[u8; 32], SecAggError> {
    let shared = mine.diffie_hellman(&PublicKey::from(*theirs));
    if !shared.was_contributory() {
        return Err(protocol("a peer's key is a low-order point"));
    }
    Ok(shared.to_bytes())
}

fn share_cipher(mine: &StaticSecret, theirs: &[u8; 32]) -> Result<ChaCha20Poly1305, SecAggError> {
    let seed = pair_seed(mine, theirs)?;
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, &seed)
        .expand(SHARE_KEY, &mut key)
        .expect("32 bytes is a valid HKDF length");
    Ok(ChaCha20Poly1305::new(&key.into()))
}

/// The nonce of the message `from` → `to` (each direction of a pair has its own).
fn nonce(from: Id, to: Id) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = from;
    n[1] = to;
    n
}

fn split(secret: &[u8], threshold: usize, n: usize) -> Vec<Vec<u8>> {
    Gf256::split_bytes(threshold, n, secret, rand010::rng())
        .expect("threshold and n were checked when the participant was made")
}

fn combine(shares: &[Vec<u8>]) -> Result<[u8; 32], SecAggError> {
    let secret = Gf256::combine_bytes(shares)
        .map_err(|e| protocol(format!("cannot recombine shares: {e:?}")))?;
    secret
        .try_into()
        .map_err(|_| protocol("a recombined secret has the wrong length"))
}

/// A sender's shares held by one site: (share of the sender's b, share of the sender's s).
type HeldShares = (Vec<u8>, Vec<u8>);

/// One site's part in one round.
pub struct Participant {
    id: Id,
    n: usize,
    threshold: usize,
    mask_secret: StaticSecret,
    share_secret: StaticSecret,
    self_seed: [u8; 32],
    ads: BTreeMap<Id, Advertisement>,
    /// The share channel with each peer, made once: the X25519 agreement is the same in both
    /// directions, so the cipher that sealed this site's shares opens the peer's.
    channels: BTreeMap<Id, ChaCha20Poly1305>,
    /// Shares received in round 1, by sender.
    held: BTreeMap<Id, HeldShares>,
    /// This site's contribution to the round's token key, and every sender's (self included).
    token_seed: [u8; 32],
    token_seeds: BTreeMap<Id, [u8; 32]>,
    opened: bool,
    sent_input: bool,
}

impl Participant {
    /// Site `id` (1..=n) in a round of `n` sites where any `threshold` can unmask.
    ///
    /// # Panics
    /// If `id` is not in 1..=n or the threshold is not in 2..=n (a threshold of 1 would let
    /// any one share reveal a seed).
    pub fn new(id: Id, n: usize, threshold: usize) -> Self {
        assert!(
            (1..=n).contains(&usize::from(id)) && n <= 255,
            "site id out of range"
        );
        assert!((2..=n).contains(&threshold), "threshold must be in 2..=n");
        let mut self_seed = [0u8; 32];
        rand::fill(&mut self_seed);
        let mut token_seed = [0u8; 32];
        rand::fill(&mut token_seed);
        Self {
            id,
            n,
            threshold,
            mask_secret: StaticSecret::random_from_rng(&mut rand010::rng()),
            share_secret: StaticSecret::random_from_rng(&mut rand010::rng()),
            self_seed,
            ads: BTreeMap::new(),
            channels: BTreeMap::new(),
            held: BTreeMap::new(),
            token_seed,
            token_seeds: BTreeMap::new(),
            opened: false,
            sent_input: false,
        }
    }

    /// This site's id in the round.
    pub fn id(&self) -> Id {
        self.id
    }

    /// Shares needed to unmask (the fewest sites whose inputs can end up in the sum).
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Round 0.
    pub fn advertise(&self) -> Advertisement {
        Advertisement {
            id: self.id,
            mask_key: PublicKey::from(&self.mask_secret).to_bytes(),
            share_key: PublicKey::from(&self.share_secret).to_bytes(),
        }
    }

    /// Round 1: given every site's advertisement, shares of b and s sealed for each peer.
    pub fn share_keys(&mut self, ads: &[Advertisement]) -> Result<Vec<SealedShares>, SecAggError> {
        let ads: BTreeMap<Id, Advertisement> = ads.iter().map(|a| (a.id, a.clone())).collect();
        if ads.len() != self.n || ads.keys().any(|&id| id == 0 || usize::from(id) > self.n) {
            return Err(protocol("the advertisements do not name sites 1..=n"));
        }
        if ads.get(&self.id) != Some(&self.advertise()) {
            return Err(protocol("the hub relayed a different key for this site"));
        }
        let seed_shares = split(&self.self_seed, self.threshold, self.n);
        let key_shares = split(&self.mask_secret.to_bytes(), self.threshold, self.n);
        let mut out = Vec::with_capacity(self.n - 1);
        for (i, (peer, ad)) in ads.iter().enumerate() {
            let sealed = Sealed {
                seed_share: seed_shares[i].clone(),
                key_share: key_shares[i].clone(),
                token_seed: self.token_seed,
            };
            if *peer == self.id {
                self.held
                    .insert(self.id, (sealed.seed_share, sealed.key_share));
                self.token_seeds.insert(self.id, self.token_seed);
                continue;
            }
            let plain = serde_json::to_vec(&sealed).expect("shares serialise");
            let cipher = share_cipher(&self.share_secret, &ad.share_key)?;
            let ciphertext = cipher
                .encrypt(&nonce(self.id, *peer).into(), plain.as_slice())
                .map_err(|_| protocol("encryption failed"))?;
            self.channels.insert(*peer, cipher);
            out.push(SealedShares {
                from: self.id,
                to: *peer,
                ciphertext,
            });
        }
        self.ads = ads;
        Ok(out)
    }

    /// Between rounds 1 and 2: opens the shares addressed to this site. The peers that mask
    /// with this site, and whose token seeds make the token key, are exactly those whose shares
    /// arrived.
    pub fn open(&mut self, inbox: Vec<SealedShares>) -> Result<(), SecAggError> {
        if self.opened {
            return Err(protocol("this site's inbox was already opened"));
        }
        for m in inbox {
            if m.to != self.id {
                return Err(protocol(
                    "a share addressed to another site was delivered here",
                ));
            }
            let cipher = self
                .channels
                .get(&m.from)
                .ok_or_else(|| protocol("a share from an unknown site"))?;
            let plain = cipher
                .decrypt(&nonce(m.from, m.to).into(), m.ciphertext.as_slice())
                .map_err(|_| {
                    protocol(format!("shares from site {} fail authentication", m.from))
                })?;
            let sealed: Sealed =
                serde_json::from_slice(&plain).map_err(|_| protocol("malformed shares"))?;
            self.held
                .insert(m.from, (sealed.seed_share, sealed.key_share));
            self.token_seeds.insert(m.from, sealed.token_seed);
        }
        if self.held.len() < self.threshold {
            return Err(SecAggError::TooFewSurvivors {
                alive: self.held.len(),
                threshold: self.threshold,
            });
        }
        self.opened = true;
        Ok(())
    }

    /// The round's group-token key: derived from the token seeds of every site whose shares
    /// arrived, so every honest site of the round holds the same key and the hub, which relayed
    /// only ciphertexts, does not. Sites name their groups to the hub by keyed tokens
    /// ([`cells::token`]) so that a group the network does not release is never named.
    pub fn token_key(&self) -> Result<[u8; 32], SecAggError> {
        if !self.opened {
            return Err(protocol("round out of order: the inbox was not opened"));
        }
        let ikm: Vec<u8> = self
            .token_seeds
            .iter()
            .flat_map(|(id, seed)| std::iter::once(*id).chain(seed.iter().copied()))
            .collect();
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &ikm)
            .expand(TOKEN_KEY, &mut key)
            .expect("32 bytes is a valid HKDF length");
        Ok(key)
    }

    /// Round 2: masks `values` (after [`Self::open`]).
    pub fn masked_input(&mut self, values: &[u64]) -> Result<MaskedInput, SecAggError> {
        if !self.opened {
            return Err(protocol("round out of order: the inbox was not opened"));
        }
        if self.sent_input {
            return Err(protocol("this site already sent its masked input"));
        }
        let mut y = values.to_vec();
        apply_prg(&self.self_seed, SELF_MASK, &mut y, true);
        for peer in self.held.keys().filter(|&&p| p != self.id) {
            let seed = pair_seed(&self.mask_secret, &self.ads[peer].mask_key)?;
            apply_prg(&seed, PAIR_MASK, &mut y, self.id < *peer);
        }
        self.sent_input = true;
        Ok(MaskedInput {
            from: self.id,
            values: y,
        })
    }

    /// Round 3: shares of survivors' seeds and dropped sites' keys — refusing a request that
    /// names a site as both (that would unmask its input) or that leaves fewer than t.
    pub fn unmask(&self, req: &UnmaskRequest) -> Result<UnmaskShares, SecAggError> {
        let survivors: BTreeSet<Id> = req.survivors.iter().copied().collect();
        let dropped: BTreeSet<Id> = req.dropped.iter().copied().collect();
        if !self.sent_input || !survivors.contains(&self.id) {
            return Err(protocol(
                "this site did not send a masked input in this round",
            ));
        }
        if survivors.intersection(&dropped).next().is_some() {
            return Err(protocol("the hub asked for both shares of one site"));
        }
        if survivors.len() < self.threshold {
            return Err(SecAggError::TooFewSurvivors {
                alive: survivors.len(),
                threshold: self.threshold,
            });
        }
        let pick = |ids: &BTreeSet<Id>, which: fn(&HeldShares) -> &Vec<u8>| {
            ids.iter()
                .filter_map(|id| self.held.get(id).map(|p| (*id, which(p).clone())))
                .collect()
        };
        Ok(UnmaskShares {
            from: self.id,
            seed_shares: pick(&survivors, |p| &p.0),
            key_shares: pick(&dropped, |p| &p.1),
        })
    }
}

/// The hub's side of a round: a mailbox for shares and the unmasking of the sum.
pub struct Aggregator {
    len: usize,
    threshold: usize,
    ads: BTreeMap<Id, Advertisement>,
    shared: BTreeSet<Id>,
    masked: BTreeMap<Id, Vec<u64>>,
}

impl Aggregator {
    /// A round over vectors of `len` elements with the sites' `ads` and a `threshold`.
    pub fn new(len: usize, ads: Vec<Advertisement>, threshold: usize) -> Result<Self, SecAggError> {
        let ads: BTreeMap<Id, Advertisement> = ads.into_iter().map(|a| (a.id, a)).collect();
        if threshold < 2 || threshold > ads.len() {
            return Err(protocol("the threshold must be in 2..=n"));
        }
        Ok(Self {
            len,
            threshold,
            ads,
            shared: BTreeSet::new(),
            masked: BTreeMap::new(),
        })
    }

    /// Sets the length of the vectors the round sums, before any masked input arrives (the hub
    /// learns it only once the sites have announced their groups).
    pub fn set_len(&mut self, len: usize) -> Result<(), SecAggError> {
        if !self.masked.is_empty() {
            return Err(protocol("the round's length is fixed once inputs arrive"));
        }
        self.len = len;
        Ok(())
    }

    /// Round 1 relay: sorts sealed shares into each recipient's inbox.
    pub fn route(&mut self, mail: Vec<SealedShares>) -> BTreeMap<Id, Vec<SealedShares>> {
        let mut inboxes: BTreeMap<Id, Vec<SealedShares>> =
            self.ads.keys().map(|&id| (id, Vec::new())).collect();
        for m in mail {
            self.shared.insert(m.from);
            if let Some(inbox) = inboxes.get_mut(&m.to) {
                inbox.push(m);
            }
        }
        inboxes
    }

    /// Round 2: accepts one site's masked vector.
    pub fn add_masked(&mut self, m: MaskedInput) -> Result<(), SecAggError> {
        if m.values.len() != self.len {
            return Err(protocol(format!(
                "site {} sent {} values, the round has {}",
                m.from,
                m.values.len(),
                self.len
            )));
        }
        if !self.shared.contains(&m.from) || self.masked.contains_key(&m.from) {
            return Err(protocol(format!(
                "unexpected masked input from site {}",
                m.from
            )));
        }
        self.masked.insert(m.from, m.values);
        Ok(())
    }

    /// Round 3 request: survivors are the sites whose masked input arrived.
    pub fn unmask_request(&self) -> UnmaskRequest {
        UnmaskRequest {
            survivors: self.masked.keys().copied().collect(),
            dropped: self
                .shared
                .iter()
                .filter(|id| !self.masked.contains_key(id))
                .copied()
                .collect(),
        }
    }

    /// Recombines the shares and returns Σ x over the survivors.
    pub fn finish(&self, answers: Vec<UnmaskShares>) -> Result<Vec<u64>, SecAggError> {
        let req = self.unmask_request();
        if answers.len() < self.threshold {
            return Err(SecAggError::TooFewSurvivors {
                alive: answers.len(),
                threshold: self.threshold,
            });
        }
        let collect = |id: Id, which: fn(&UnmaskShares) -> &BTreeMap<Id, Vec<u8>>| {
            let shares: Vec<Vec<u8>> = answers
                .iter()
                .filter_map(|a| which(a).get(&id).cloned())
                .take(self.threshold)
                .collect();
            if shares.len() < self.threshold {
                return Err(protocol(format!("too few shares for site {id}")));
            }
            combine(&shares)
        };
        let mut sum = vec![0u64; self.len];
        for y in self.masked.values() {
            for (s, v) in sum.iter_mut().zip(y) {
                *s = s.wrapping_add(*v);
            }
        }
        for &u in &req.survivors {
            let seed = collect(u, |a| &a.seed_shares)?;
            apply_prg(&seed, SELF_MASK, &mut sum, false);
        }
        for &d in &req.dropped {
            let secret = StaticSecret::from(collect(d, |a| &a.key_shares)?);
            if PublicKey::from(&secret).to_bytes() != self.ads[&d].mask_key {
                return Err(protocol(format!(
                    "recombined key of site {d} does not match"
                )));
            }
            for &u in &req.survivors {
                // Survivor u added +PRG(s_ud) if u < d, else −PRG(s_ud): undo it.
                let seed = pair_seed(&secret, &self.ads[&u].mask_key)?;
                apply_prg(&seed, PAIR_MASK, &mut sum, u > d);
            }
        }
        Ok(sum)
    }
}

mod simulate;
pub use simulate::simulate_round;

#[cfg(test)]
mod tests;
