//! The assignor: a pure function from (partition counts, members and their topics, current
//! owners) to the target owner of every partition.
//!
//! - **Balanced**: per topic, the members subscribed to it get `n / k` or `n / k + 1` partitions.
//! - **Sticky**: every member keeps as many of the partitions it holds as its share allows; only
//!   the surplus (and partitions nobody holds) moves. Members holding the most get the larger
//!   shares, so no partition moves that need not.
//!
//! Cooperation (revoke first, grant after release) is the coordinator's job
//! ([`super::state`]); this module only says where each partition should end up.

use std::collections::{BTreeMap, BTreeSet};

/// One partition of one topic.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The target owner of every partition of `partitions` (topic → partition count) that some
/// member of `members` (member → its topics) subscribes to, keeping `current` (partition →
/// owner) where balance allows.
pub fn assign(
    partitions: &BTreeMap<String, u32>,
    members: &BTreeMap<String, BTreeSet<String>>,
    current: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<TopicPartition, String> {
    let mut target = BTreeMap::new();
    for (topic, &count) in partitions {
        let eligible: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if eligible.is_empty() || count == 0 {
            continue;
        }
        let mut held: BTreeMap<&String, Vec<u32>> =
            eligible.iter().map(|m| (*m, Vec::new())).collect();
        for p in 0..count {
            if let Some(owner) = current.get(&TopicPartition::new(topic.as_str(), p))
                && let Some(list) = held.get_mut(owner)
            {
                list.push(p);
            }
        }
        let k = eligible.len();
        let count = count as usize;
        let (base, extra) = (count / k, count % k);
        // Larger shares go to the members holding the most, so they keep what they hold.
        let mut order = eligible.clone();
        order.sort_by(|a, b| held[b].len().cmp(&held[a].len()).then(a.cmp(b)));
        let mut taken = vec![false; count];
        let mut share: Vec<(&String, usize)> = Vec::with_capacity(k);
        for (i, m) in order.iter().enumerate() {
            let cap = base + usize::from(i < extra);
            let keep: Vec<u32> = held[*m].iter().copied().take(cap).collect();
            for &p in &keep {
                taken[p as usize] = true;
                target.insert(TopicPartition::new(topic.as_str(), p), (*m).clone());
            }
            share.push((m, cap - keep.len()));
        }
        let mut free = (0..count).filter(|&p| !taken[p]);
        for (m, missing) in share {
            for p in free.by_ref().take(missing) {
                target.insert(TopicPartition::new(topic.as_str(), p as u32), m.clone());
            }
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str], topic: &str) -> BTreeMap<String, BTreeSet<String>> {
        ids.iter()
            .map(|m| (m.to_string(), BTreeSet::from([topic.to_string()])))
            .collect()
    }

    fn counts(target: &BTreeMap<TopicPartition, String>) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for m in target.values() {
            *out.entry(m.clone()).or_default() += 1;
        }
        out
    }

    #[test]
    fn balanced_and_sticky_when_a_member_joins() {
        let parts = BTreeMap::from([("t".to_string(), 12)]);
        let first = assign(&parts, &members(&["a", "b", "c"], "t"), &BTreeMap::new());
        assert_eq!(first.len(), 12);
        assert!(counts(&first).values().all(|&n| n == 4));
        let second = assign(&parts, &members(&["a", "b", "c", "d"], "t"), &first);
        assert!(counts(&second).values().all(|&n| n == 3));
        let moved = first.iter().filter(|(tp, m)| &second[*tp] != *m).count();
        assert_eq!(moved, 3, "only the new member's share moves");
        assert!(
            second
                .iter()
                .filter(|(tp, _)| first[*tp] != second[*tp])
                .all(|(_, m)| m == "d")
        );
    }

    #[test]
    fn a_leave_moves_only_the_leavers_partitions() {
        let parts = BTreeMap::from([("t".to_string(), 10)]);
        let all = members(&["a", "b", "c"], "t");
        let before = assign(&parts, &all, &BTreeMap::new());
        let mut rest = all.clone();
        rest.remove("b");
        let after = assign(&parts, &rest, &before);
        for (tp, m) in &before {
            if m != "b" {
                assert_eq!(&after[tp], m, "{tp} stays");
            }
        }
        let c = counts(&after);
        assert_eq!(c.values().sum::<usize>(), 10);
        assert!(c.values().max().unwrap() - c.values().min().unwrap() <= 1);
    }

    #[test]
    fn topics_are_balanced_among_their_own_subscribers() {
        let parts = BTreeMap::from([("x".to_string(), 4), ("y".to_string(), 3)]);
        let m = BTreeMap::from([
            ("a".to_string(), BTreeSet::from(["x".to_string()])),
            (
                "b".to_string(),
                BTreeSet::from(["x".to_string(), "y".to_string()]),
            ),
        ]);
        let t = assign(&parts, &m, &BTreeMap::new());
        assert_eq!(t.len(), 7);
        assert!((0..3).all(|p| t[&TopicPartition::new("y", p)] == "b"));
        let xa = (0..4)
            .filter(|&p| t[&TopicPartition::new("x", p)] == "a")
            .count();
        assert_eq!(xa, 2);
    }
}
