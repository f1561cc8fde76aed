//! Traffic splits: which of an alias's two models answers a request.
//!
//! An alias may point at a model and a canary with a share (`alias set iris prod 4
//! --canary 5 --percent 10`). `serve iris:prod` loads both and sends the canary its share
//! ([`Slot::pick`](super::state::Slot::pick)):
//!
//! - With a sticky key (the header `serve --sticky-header` names, `x-user-id`), the choice
//!   is a pure function of the key and the split: the key's bucket, the first 8 bytes of
//!   `sha256(canary number, key)` modulo 100, goes to the canary when it is under the
//!   share. Every replica computes the same, so one user sees one version whichever
//!   replica answers; raising the share keeps the users who had the canary on it (their
//!   buckets stay under it); a new canary number draws a new set of users.
//! - Without one, requests take turns: the n-th request's bucket is `37 n mod 100`, a
//!   permutation of 0..100 over every 100 consecutive requests, so the canary answers
//!   exactly its share of each hundred, spread through it rather than in a run.

use sha2::{Digest, Sha256};

/// The bucket (0..100) of sticky key `key` under a split whose canary is `canary`.
pub(crate) fn sticky_bucket(canary: u64, key: &[u8]) -> u8 {
    let mut hasher = Sha256::new();
    hasher.update(canary.to_le_bytes());
    hasher.update(key);
    let digest = hasher.finalize();
    let first = u64::from_le_bytes(digest[..8].try_into().expect("a sha256 has 32 bytes"));
    (first % 100) as u8
}

/// The bucket (0..100) of the `turn`-th request without a sticky key.
pub(crate) fn turn_bucket(turn: u64) -> u8 {
    // 37 is coprime with 100: n -> 37 n mod 100 is a permutation of 0..100.
    ((turn % 100) * 37 % 100) as u8
}

/// Whether a request in `bucket` goes to a canary with `percent` of the requests.
pub(crate) fn to_canary(bucket: u8, percent: u8) -> bool {
    bucket < percent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_give_the_canary_exactly_its_share_of_every_hundred() {
        for percent in [0u8, 1, 5, 10, 33, 50, 99, 100] {
            for start in [0u64, 17, 1_000_003] {
                let canary = (start..start + 100).filter(|&n| to_canary(turn_bucket(n), percent)).count();
                assert_eq!(canary, usize::from(percent), "share {percent}% from turn {start}");
            }
        }
        // Spread through the hundred, not in a run: at 10%, no two canary turns are adjacent.
        let turns: Vec<u64> = (0..100).filter(|&n| to_canary(turn_bucket(n), 10)).collect();
        assert!(turns.windows(2).all(|w| w[1] - w[0] > 1), "{turns:?}");
    }

    #[test]
    fn sticky_buckets_are_stable_spread_and_monotone_in_the_share() {
        // Pure: the same key and canary always land in the same bucket (every replica agrees).
        assert_eq!(sticky_bucket(5, b"user-42"), sticky_bucket(5, b"user-42"));
        // Spread: 10,000 keys fill the hundred buckets within a few points of 1% each.
        let mut counts = [0u32; 100];
        for user in 0..10_000 {
            counts[usize::from(sticky_bucket(5, format!("user-{user}").as_bytes()))] += 1;
        }
        let at_10: u32 = counts[..10].iter().sum();
        assert!((800..=1200).contains(&at_10), "{at_10} of 10000 keys under 10%");
        // Raising the share keeps the canary's users on it.
        for user in 0..1000 {
            let bucket = sticky_bucket(5, format!("user-{user}").as_bytes());
            assert!(!to_canary(bucket, 10) || to_canary(bucket, 25));
        }
        // Another canary draws other users.
        let same = (0..1000)
            .filter(|u| {
                sticky_bucket(5, format!("user-{u}").as_bytes()) == sticky_bucket(6, format!("user-{u}").as_bytes())
            })
            .count();
        assert!(same < 50, "{same} of 1000 keys share their bucket across canaries");
    }
}
