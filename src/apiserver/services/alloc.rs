//! Reservations of ClusterIPs and NodePorts, one store key each
//! (`/registry/ranges/serviceips/10.43.0.12`, `/registry/ranges/servicenodeports/30080`).
//!
//! Creating the key is the reservation, so two API servers on one etcd can never hand out
//! the same address: the store's create-if-absent decides. The value names the owner and
//! the time, so the repair loop can tell a leaked reservation from a fresh one.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};

use crate::k8s::cidr::Ipv4Cidr;
use crate::store::{Backend, ListRequest, StoreError};

/// Where ClusterIP reservations live.
pub const IP_PREFIX: &str = "/registry/ranges/serviceips/";
/// Where NodePort reservations live.
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Why a reservation was not made.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// The value asked for lies outside the range.
    #[error("provided {what} is not in the valid range. The range of valid {what}s is {range}")]
    OutOfRange {
        /// `IP` or `port`.
        what: &'static str,
        /// The range, as the flag gave it.
        range: String,
    },
    /// The value asked for is taken.
    #[error("provided {what} is already allocated")]
    Taken {
        /// `IP` or `port`.
        what: &'static str,
    },
    /// Nothing is left to hand out.
    #[error("range is full")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One range of values handed out through store keys.
pub trait Range: Send + Sync {
    /// `IP` or `port`, for messages.
    const WHAT: &'static str;
    /// The key prefix of the reservations.
    fn prefix(&self) -> &'static str;
    /// The range, for messages.
    fn describe(&self) -> String;
    /// How many slots there are.
    fn slots(&self) -> u64;
    /// The text of slot `i`.
    fn slot(&self, i: u64) -> String;
    /// The slot of a value given as text, if it is inside the range.
    fn slot_of(&self, text: &str) -> Option<u64>;
    /// Slots tried first when picking: upstream keeps a lower band for values users ask for.
    fn preferred(&self) -> std::ops::Range<u64>;
    /// Whether a slot may be handed out without being asked for.
    fn dynamic(&self, i: u64) -> bool;
}

/// The service CIDR. Slot 1 is the `kubernetes` service's and slot 10 cluster DNS's; the
/// network and broadcast addresses are never used.
pub struct IpRange(pub Ipv4Cidr);

impl Range for IpRange {
    const WHAT: &'static str = "IP";

    fn prefix(&self) -> &'static str {
        IP_PREFIX
    }

    fn describe(&self) -> String {
        self.0.to_string()
    }

    fn slots(&self) -> u64 {
        self.0.size()
    }

    fn slot(&self, i: u64) -> String {
        self.0.nth(i).map(|a| a.to_string()).unwrap_or_default()
    }

    fn slot_of(&self, text: &str) -> Option<u64> {
        let addr: Ipv4Addr = text.parse().ok()?;
        self.0
            .offset_of(addr)
            .filter(|&i| i > 0 && i + 1 < self.0.size())
    }

    fn preferred(&self) -> std::ops::Range<u64> {
        // kube-apiserver's lower band: min(max(16, size/16), 256) addresses.
        let band = (self.slots() / 16).clamp(16, 256).min(self.slots() / 2);
        band..self.slots() - 1
    }

    fn dynamic(&self, i: u64) -> bool {
        i > 0 && i + 1 < self.slots() && i != 1 && i != 10
    }
}

/// The NodePort range, 30000-32767 by default.
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl Range for PortRange {
    const WHAT: &'static str = "port";

    fn prefix(&self) -> &'static str {
        PORT_PREFIX
    }

    fn describe(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    fn slots(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    fn slot(&self, i: u64) -> String {
        (u64::from(self.first) + i).to_string()
    }

    fn slot_of(&self, text: &str) -> Option<u64> {
        let port: u16 = text.parse().ok()?;
        (self.first..=self.last)
            .contains(&port)
            .then(|| u64::from(port - self.first))
    }

    fn preferred(&self) -> std::ops::Range<u64> {
        let band = (self.slots() / 32).clamp(16, 128).min(self.slots() / 2);
        band..self.slots()
    }

    fn dynamic(&self, _: u64) -> bool {
        true
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of a reservation key.
pub fn reservation(owner: &str) -> Vec<u8> {
    json!({"owner": owner, "time": unix_now()})
        .to_string()
        .into_bytes()
}

/// The owner (`namespace/name`) and age in seconds of a reservation's value.
pub fn parse_reservation(value: &[u8]) -> (String, u64) {
    let v: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
    let owner = v["owner"].as_str().unwrap_or_default().to_string();
    let age = unix_now().saturating_sub(v["time"].as_u64().unwrap_or(0));
    (owner, age)
}

/// Reserves `wanted` for `owner`; a value already held by the same owner is kept.
pub async fn reserve<R: Range>(
    store: &dyn Backend,
    range: &R,
    wanted: &str,
    owner: &str,
) -> Result<(), AllocError> {
    if range.slot_of(wanted).is_none() {
        return Err(AllocError::OutOfRange {
            what: R::WHAT,
            range: range.describe(),
        });
    }
    let key = format!("{}{wanted}", range.prefix());
    match store.create(&key, reservation(owner), None).await {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists { .. }) => {
            let (_, kv) = store.get(&key, 0).await?;
            match kv {
                Some(kv) if parse_reservation(&kv.value).0 == owner => Ok(()),
                _ => Err(AllocError::Taken { what: R::WHAT }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Reserves a free value for `owner`, preferring the upper band, and returns it.
pub async fn allocate<R: Range>(
    store: &dyn Backend,
    range: &R,
    owner: &str,
) -> Result<String, AllocError> {
    // A few rounds: another server may take the value picked between list and create.
    for _ in 0..8 {
        let taken = taken(store, range).await?;
        let Some(slot) = pick(range, &taken) else {
            return Err(AllocError::Full);
        };
        let value = range.slot(slot);
        let key = format!("{}{value}", range.prefix());
        match store.create(&key, reservation(owner), None).await {
            Ok(_) => return Ok(value),
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AllocError::Full)
}

async fn taken<R: Range>(store: &dyn Backend, range: &R) -> Result<HashSet<u64>, StoreError> {
    let page = store.list(&ListRequest::prefix(range.prefix())).await?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| range.slot_of(kv.key.strip_prefix(range.prefix())?))
        .collect())
}

/// A free slot: a random start in the preferred band, then the first free one after it,
/// wrapping; then the rest of the range.
fn pick<R: Range>(range: &R, taken: &HashSet<u64>) -> Option<u64> {
    let band = range.preferred();
    let free = |i: &u64| range.dynamic(*i) && !taken.contains(i);
    if !band.is_empty() {
        let start = rand::rng().random_range(band.clone());
        if let Some(i) = (start..band.end).chain(band.start..start).find(free) {
            return Some(i);
        }
    }
    (0..range.slots()).find(free)
}

/// Drops a reservation; one already gone is fine.
pub async fn release<R: Range>(store: &dyn Backend, range: &R, value: &str) {
    let key = format!("{}{value}", range.prefix());
    match store.delete(&key, None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(err) => {
            tracing::warn!(key = %key, error = %err, "Releasing a reservation failed; the repair loop will retry.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_addresses_avoid_the_reserved_slots_and_prefer_the_upper_band() {
        let range = IpRange("10.43.0.0/28".parse().unwrap());
        assert_eq!(range.slot_of("10.43.0.0"), None);
        assert_eq!(range.slot_of("10.43.0.15"), None);
        assert_eq!(range.slot_of("10.43.0.14"), Some(14));
        let mut taken = HashSet::new();
        let mut seen = Vec::new();
        while let Some(i) = pick(&range, &taken) {
            taken.insert(i);
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, vec![2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]);
        let wide = IpRange("10.43.0.0/16".parse().unwrap());
        for _ in 0..50 {
            assert!(pick(&wide, &HashSet::new()).unwrap() >= 256);
        }
    }

    #[test]
    fn node_ports_stay_inside_their_range() {
        let range = PortRange {
            first: 30000,
            last: 30002,
        };
        assert_eq!(range.slot_of("29999"), None);
        assert_eq!(range.slot_of("30002"), Some(2));
        let taken: HashSet<u64> = [0, 2].into();
        assert_eq!(pick(&range, &taken), Some(1));
        assert_eq!(pick(&range, &[0, 1, 2].into()), None);
    }
}
