//! The group state machine driven directly: the scenarios and a property test over
//! random joins, leaves, crashes, static rejoins, expiries and restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::assign::TopicPartition;
use super::state::{GroupPhase, GroupState, JoinSpec, MemberKind};

const TIMEOUT: Duration = Duration::from_secs(10);

fn counts(t: &str) -> Option<u32> {
    match t {
        "t" => Some(12),
        "u" => Some(5),
        _ => None,
    }
}

fn spec(instance: Option<&str>, topics: &[&str]) -> JoinSpec {
    JoinSpec {
        member_id: None,
        instance_id: instance.map(str::to_string),
        client_id: "test".into(),
        address: String::new(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        kind: MemberKind::Stream,
    }
}

/// No partition has two owners.
fn assert_single_owners(s: &GroupState) {
    let mut seen = BTreeSet::new();
    for m in s.members.values() {
        for tp in &m.owned {
            assert!(seen.insert(tp.clone()), "{tp} has two owners: {s:#?}");
        }
    }
}

/// Every member releases what it is asked to until nothing moves; returns each partition's
/// owners in order, from the state before.
fn settle(s: &mut GroupState, now: Instant) -> BTreeMap<TopicPartition, Vec<String>> {
    let mut history: BTreeMap<TopicPartition, Vec<String>> = BTreeMap::new();
    let record = |s: &GroupState, h: &mut BTreeMap<TopicPartition, Vec<String>>| {
        for m in s.members.values() {
            for tp in &m.owned {
                let owners = h.entry(tp.clone()).or_default();
                if owners.last() != Some(&m.id) {
                    owners.push(m.id.clone());
                }
            }
        }
    };
    record(s, &mut history);
    for _ in 0..10 {
        let ids: Vec<(String, u64)> = s
            .members
            .values()
            .map(|m| (m.id.clone(), m.epoch))
            .collect();
        let mut moved = false;
        for (id, epoch) in ids {
            let revoking = s.view(&id).map(|v| v.revoking).unwrap_or_default();
            if !revoking.is_empty() {
                moved |= s
                    .release(&id, epoch, &revoking, now)
                    .expect("current member");
                assert_single_owners(s);
                record(s, &mut history);
            }
        }
        if !moved {
            break;
        }
    }
    history
}

fn owned_counts(s: &GroupState) -> BTreeMap<String, usize> {
    s.members
        .values()
        .map(|m| (m.id.clone(), m.owned.len()))
        .collect()
}

#[test]
fn three_members_get_four_each_a_fourth_gets_three_and_nothing_moves_twice() {
    let now = Instant::now();
    let mut s = GroupState::default();
    for i in 0..3 {
        s.join(spec(None, &["t"]), format!("m{i}"), now, &counts)
            .expect("join");
        settle(&mut s, now);
    }
    assert_eq!(s.phase(), GroupPhase::Stable);
    assert!(owned_counts(&s).values().all(|&n| n == 4), "{s:#?}");
    let before: BTreeMap<TopicPartition, String> = s
        .members
        .values()
        .flat_map(|m| m.owned.iter().map(|tp| (tp.clone(), m.id.clone())))
        .collect();
    s.join(spec(None, &["t"]), "m3".into(), now, &counts)
        .expect("join");
    assert_eq!(s.phase(), GroupPhase::Reconciling);
    assert!(
        s.members["m3"].owned.is_empty(),
        "nothing is granted before it is released"
    );
    let history = settle(&mut s, now);
    assert_eq!(s.phase(), GroupPhase::Stable);
    assert!(owned_counts(&s).values().all(|&n| n == 3), "{s:#?}");
    for (tp, owners) in &history {
        assert!(
            owners.len() <= 2,
            "{tp} changed hands more than once: {owners:?}"
        );
        if owners.len() == 2 {
            assert_eq!(owners[1], "m3");
            assert_eq!(owners[0], before[tp]);
        }
    }
    assert_eq!(history.values().filter(|o| o.len() == 2).count(), 3);
    // One leaves: its partitions move to the others at once (no release needed).
    let leaving: BTreeSet<TopicPartition> = s.members["m1"].owned.clone();
    assert!(s.remove("m1", now, &counts));
    assert_single_owners(&s);
    assert_eq!(s.phase(), GroupPhase::Stable);
    for tp in leaving {
        assert!(s.owner(&tp).is_some_and(|o| o != "m1"), "{tp} moved");
    }
    assert!(owned_counts(&s).values().all(|&n| n == 4));
}

#[test]
fn a_static_member_back_within_the_timeout_keeps_its_partitions() {
    let now = Instant::now();
    let mut s = GroupState::default();
    let (a, ea) = s
        .join(spec(Some("a"), &["t"]), "x".into(), now, &counts)
        .unwrap();
    s.join(spec(None, &["t"]), "b".into(), now, &counts)
        .unwrap();
    settle(&mut s, now);
    let owned = s.members[&a].owned.clone();
    assert_eq!(owned.len(), 6);
    assert!(s.disconnect(&a, ea, now, &counts));
    assert_eq!(s.members[&a].owned, owned, "kept while disconnected");
    let rebalances = s.rebalances;
    let (a2, ea2) = s
        .join(
            spec(Some("a"), &["t"]),
            "y".into(),
            now + Duration::from_secs(5),
            &counts,
        )
        .unwrap();
    assert_eq!(a2, a);
    assert!(ea2 > ea);
    assert_eq!(s.members[&a].owned, owned);
    assert_eq!(s.rebalances, rebalances, "no rebalance");
    // The old incarnation is fenced.
    assert!(s.heartbeat(&a, ea, now).is_err());
    // Gone past the timeout: removed, partitions move.
    assert!(s.disconnect(&a, ea2, now, &counts));
    let gone = s.expire(now + TIMEOUT + Duration::from_secs(1), TIMEOUT, &counts);
    assert!(gone.contains(&a));
    assert_eq!(
        owned_counts(&s).values().sum::<usize>(),
        0,
        "b was expired too (silent)"
    );
}

#[test]
fn a_restart_keeps_static_members_and_drops_dynamic_ones() {
    let now = Instant::now();
    let mut s = GroupState::default();
    let (a, _) = s
        .join(spec(Some("a"), &["t"]), "x".into(), now, &counts)
        .unwrap();
    let (b, eb) = s
        .join(spec(None, &["t"]), "b".into(), now, &counts)
        .unwrap();
    settle(&mut s, now);
    let a_owned = s.members[&a].owned.clone();
    let json = serde_json::to_vec(&s.snapshot()).unwrap();
    let restored = GroupState::restore(serde_json::from_slice(&json).unwrap(), now, &counts);
    assert!(restored.members.contains_key(&a));
    assert!(!restored.members.contains_key(&b), "dynamic members rejoin");
    assert!(restored.members[&a].owned.is_superset(&a_owned));
    assert!(!restored.members[&a].connected);
    assert!(restored.epoch > eb, "epochs move on");
    assert_single_owners(&restored);
}

#[derive(Debug, Clone)]
enum Op {
    Join(u8),
    JoinStatic(u8, u8),
    Leave(u8),
    Crash(u8),
    Release(u8),
    Heartbeats,
    Wait(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(Op::Join),
        2 => (0u8..3, 0u8..3).prop_map(|(i, t)| Op::JoinStatic(i, t)),
        1 => any::<u8>().prop_map(Op::Leave),
        2 => any::<u8>().prop_map(Op::Crash),
        4 => any::<u8>().prop_map(Op::Release),
        2 => Just(Op::Heartbeats),
        1 => (1u8..15).prop_map(Op::Wait),
        1 => Just(Op::Restart),
    ]
}

fn topics_of(t: u8) -> &'static [&'static str] {
    match t {
        0 => &["t"],
        1 => &["u"],
        _ => &["t", "u"],
    }
}

fn pick(s: &GroupState, i: u8) -> Option<(String, u64)> {
    let ids: Vec<_> = s
        .members
        .values()
        .map(|m| (m.id.clone(), m.epoch))
        .collect();
    (!ids.is_empty()).then(|| ids[i as usize % ids.len()].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn never_two_owners_and_all_owned_once_quiet(ops in proptest::collection::vec(op(), 1..60)) {
        let start = Instant::now();
        let mut now = start;
        let mut s = GroupState::default();
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Join(t) => {
                    next += 1;
                    s.join(spec(None, topics_of(t)), format!("d{next}"), now, &counts).unwrap();
                }
                Op::JoinStatic(i, t) => {
                    next += 1;
                    let instance = format!("s{i}");
                    s.join(spec(Some(&instance), topics_of(t)), format!("d{next}"), now, &counts).unwrap();
                }
                Op::Leave(i) => if let Some((id, _)) = pick(&s, i) {
                    s.remove(&id, now, &counts);
                },
                Op::Crash(i) => if let Some((id, e)) = pick(&s, i) {
                    s.disconnect(&id, e, now, &counts);
                },
                Op::Release(i) => if let Some((id, e)) = pick(&s, i) {
                    let revoking = s.view(&id).unwrap().revoking;
                    s.release(&id, e, &revoking, now).unwrap();
                },
                Op::Heartbeats => {
                    let live: Vec<_> = s.members.values().filter(|m| m.connected).map(|m| (m.id.clone(), m.epoch)).collect();
                    for (id, e) in live {
                        s.heartbeat(&id, e, now).unwrap();
                    }
                }
                Op::Wait(secs) => {
                    now += Duration::from_secs(u64::from(secs));
                    s.expire(now, TIMEOUT, &counts);
                }
                Op::Restart => {
                    let json = serde_json::to_vec(&s.snapshot()).unwrap();
                    s = GroupState::restore(serde_json::from_slice(&json).unwrap(), now, &counts);
                }
            }
            assert_single_owners(&s);
        }
        settle(&mut s, now);
        prop_assert_ne!(s.phase(), GroupPhase::Reconciling);
        for topic in ["t", "u"] {
            let subscribers: Vec<_> = s.members.values().filter(|m| m.topics.contains(topic)).collect();
            if subscribers.is_empty() {
                continue;
            }
            for p in 0..counts(topic).unwrap() {
                prop_assert!(s.owner(&TopicPartition::new(topic, p)).is_some(), "{topic}/{p} unowned");
            }
            let per: Vec<usize> = subscribers.iter().map(|m| m.owned.iter().filter(|tp| tp.topic == topic).count()).collect();
            prop_assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "unbalanced {per:?}");
        }
    }
}
