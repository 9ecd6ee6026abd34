//! Groups with members on the core (issue 13): assignment through memberships, cooperative
//! moves, fencing of poll, commit and subscribe, memberless use refused, durable state across a
//! restart, DeleteGroup.

use std::collections::BTreeSet;
use std::time::Duration;

use obelisk::broker::{
    Broker, BrokerError, GroupPhase, JoinRequest, MemberRef, MemberView, Membership, PollRequest,
    ReadLimits, StartPosition, SubscribeRequest,
};

use crate::common::broker::{TestBroker, rec};
use crate::common::wait::PATIENCE;

fn join(group: &str, topic: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        topics: vec![topic.into()],
        instance_id: instance.map(str::to_string),
        client_id: "test".into(),
        address: String::new(),
    }
}

/// Releases what each membership is asked to until every view is settled.
async fn settle(members: &mut [Membership]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut busy = false;
        for m in members.iter() {
            let v = m.view();
            if !v.revoking.is_empty() {
                busy = true;
                m.release(&v.revoking).await.expect("release");
            }
        }
        if !busy {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never settled");
    }
}

fn assigned(v: &MemberView) -> BTreeSet<u32> {
    v.assigned.iter().map(|tp| tp.partition).collect()
}

fn member_poll(group: &str, topic: &str, member: Option<MemberRef>) -> PollRequest {
    PollRequest {
        topic: topic.into(),
        group: group.into(),
        limits: ReadLimits::default(),
        start_if_new: StartPosition::Earliest,
        member,
    }
}

async fn produce_each(b: &Broker, topic: &str, partitions: u32, per: usize) {
    for p in 0..partitions {
        let records = (0..per)
            .map(|i| {
                let mut r = rec("", &format!("{p}-{i}"));
                r.partition = Some(p);
                r
            })
            .collect();
        b.produce(topic, records).await.expect("produce");
    }
}

#[tokio::test]
async fn twelve_partitions_split_four_ways_then_three_a_fourth_joins_cooperatively() {
    let b = TestBroker::open().await;
    b.create("t", 12).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(b.join_group(join("g", "t", None)).await.expect("join"));
        settle(&mut members).await;
    }
    let views: Vec<MemberView> = members.iter().map(Membership::view).collect();
    assert!(views.iter().all(|v| v.assigned.len() == 4), "{views:?}");
    let before: Vec<BTreeSet<u32>> = views.iter().map(assigned).collect();
    members.push(b.join_group(join("g", "t", None)).await.expect("join"));
    assert!(
        members[3].view().assigned.is_empty(),
        "granted only once released"
    );
    let g = b.group_membership("g").expect("group");
    assert_eq!(g.phase, GroupPhase::Reconciling);
    settle(&mut members).await;
    let after: Vec<BTreeSet<u32>> = members.iter().map(|m| assigned(&m.view())).collect();
    assert!(after.iter().all(|a| a.len() == 3), "{after:?}");
    for i in 0..3 {
        assert!(
            after[i].is_subset(&before[i]),
            "old members only give up partitions"
        );
    }
    assert_eq!(b.group_membership("g").unwrap().phase, GroupPhase::Stable);
    // One leaves: its partitions move at once.
    let leaver = members.remove(1);
    let its = assigned(&leaver.view());
    leaver.leave().await.expect("leave");
    let owners: BTreeSet<u32> = members.iter().flat_map(|m| assigned(&m.view())).collect();
    assert_eq!(owners.len(), 12, "every partition owned after the leave");
    assert!(its.is_subset(&owners));
}

#[tokio::test]
async fn a_member_polls_only_its_partitions_and_a_fenced_commit_changes_nothing() {
    let b = TestBroker::open().await;
    b.create("t", 4).await;
    produce_each(&b, "t", 4, 3).await;
    let mut ms = vec![
        b.join_group(join("g", "t", None)).await.unwrap(),
        b.join_group(join("g", "t", None)).await.unwrap(),
    ];
    settle(&mut ms).await;
    let (a, other) = (&ms[0], &ms[1]);
    let mine = assigned(&a.view());
    assert_eq!(mine.len(), 2);
    let got = b
        .poll(member_poll("g", "t", Some(a.member().clone())))
        .await
        .expect("poll");
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|r| mine.contains(&r.partition)));
    // Commit a partition the other member owns: refused, nothing stored.
    let theirs = *assigned(&other.view()).iter().next().unwrap();
    let err = b
        .commit_as("t", "g", &[(theirs, 2)], Some(a.member()))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Fenced { .. }), "{err}");
    assert!(err.to_string().starts_with("fenced: rejoin"), "{err}");
    let stale = MemberRef {
        id: a.member().id.clone(),
        epoch: a.member().epoch + 100,
    };
    let mine0 = *mine.iter().next().unwrap();
    let err = b
        .commit_as("t", "g", &[(mine0, 2)], Some(&stale))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Fenced { .. }), "{err}");
    assert!(
        b.describe_group("g").unwrap().is_empty(),
        "no fenced commit stored anything"
    );
    b.commit_as("t", "g", &[(mine0, 2)], Some(a.member()))
        .await
        .expect("own partition");
    // Memberless calls on a group with members are refused, clearly.
    let err = b.poll(member_poll("g", "t", None)).await.unwrap_err();
    assert!(matches!(err, BrokerError::GroupHasMembers { .. }), "{err}");
    let err = b.commit("t", "g", &[(mine0, 3)]).await.unwrap_err();
    assert!(matches!(err, BrokerError::GroupHasMembers { .. }), "{err}");
    let err = b
        .reset("t", "g", obelisk::broker::Position::Earliest)
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::GroupHasMembers { .. }), "{err}");
    // Another group still works memberless.
    assert_eq!(
        b.poll(member_poll("free", "t", None)).await.unwrap().len(),
        12
    );
}

#[tokio::test]
async fn a_subscription_ends_for_revoked_partitions_and_picks_up_new_ones() {
    let b = TestBroker::open().await;
    b.create("t", 2).await;
    produce_each(&b, "t", 2, 2).await;
    let mut ms = vec![b.join_group(join("g", "t", None)).await.unwrap()];
    let mut sub = b
        .subscribe(SubscribeRequest {
            topic: "t".into(),
            group: Some("g".into()),
            start: None,
            max_records_per_batch: 0,
            member: Some(ms[0].member().clone()),
        })
        .expect("subscribe");
    let mut seen = 0;
    while seen < 4 {
        let batch = tokio::time::timeout(PATIENCE, sub.next_batch())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen += batch.len();
    }
    ms.push(b.join_group(join("g", "t", None)).await.unwrap());
    settle(&mut ms).await;
    let kept = assigned(&ms[0].view());
    assert_eq!(kept.len(), 1);
    produce_each(&b, "t", 2, 1).await;
    let batch = tokio::time::timeout(PATIENCE, sub.next_batch())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        batch.iter().all(|r| kept.contains(&r.partition)),
        "{batch:?}"
    );
    // Fenced (member left): the subscription says so and ends.
    let first = ms.remove(0);
    first.leave().await.unwrap();
    let end = tokio::time::timeout(PATIENCE, sub.next_batch())
        .await
        .unwrap();
    assert!(
        matches!(end, Some(Err(BrokerError::Fenced { .. }))),
        "{end:?}"
    );
    assert!(sub.next_batch().await.is_none());
}

#[tokio::test]
async fn static_membership_and_epochs_survive_a_restart_and_dynamic_members_rejoin() {
    let b = TestBroker::open().await;
    b.create("t", 4).await;
    let mut ms = vec![
        b.join_group(join("g", "t", Some("static-a")))
            .await
            .unwrap(),
        b.join_group(join("g", "t", None)).await.unwrap(),
    ];
    settle(&mut ms).await;
    let a_parts = assigned(&ms[0].view());
    let (a_ref, dyn_ref) = (ms[0].member().clone(), ms[1].member().clone());
    // Memberships are not ended by the restart (as with a crash): the state on disk decides.
    std::mem::forget(ms);
    let b = b.restart().await;
    let g = b.group_membership("g").expect("durable group");
    assert_eq!(g.members.len(), 1, "the dynamic member is gone: {g:?}");
    assert_eq!(g.members[0].id, a_ref.id);
    assert!(!g.members[0].connected);
    let err = b
        .poll(member_poll("g", "t", Some(dyn_ref.clone())))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Fenced { .. }), "{err}");
    // The static member still owns its partitions while it has not rejoined...
    b.poll(member_poll("g", "t", Some(a_ref.clone())))
        .await
        .expect("a static member owns its partitions through the restart");
    let back = b
        .join_group(join("g", "t", Some("static-a")))
        .await
        .unwrap();
    // ... and once it rejoins, its old incarnation is fenced.
    let err = b
        .poll(member_poll("g", "t", Some(a_ref.clone())))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Fenced { .. }), "{err}");
    assert_eq!(back.member().id, a_ref.id);
    assert!(back.member().epoch > dyn_ref.epoch);
    let now = assigned(&back.view());
    assert!(
        a_parts.is_subset(&now),
        "static member got its partitions back"
    );
    assert_eq!(now.len(), 4, "and the dynamic member's share");
}

#[tokio::test]
async fn a_silent_member_expires_after_the_session_timeout() {
    let b = TestBroker::open_with(|c| c.group_session_timeout = Duration::from_millis(300)).await;
    b.create("t", 2).await;
    let mut quiet = b.join_group(join("g", "t", None)).await.unwrap();
    assert_eq!(quiet.view().assigned.len(), 2);
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            let v = quiet.changed().await;
            if v.ended.is_some() {
                return v;
            }
        }
    })
    .await
    .expect("removed within the session timeout");
    assert!(ended.ended.is_some());
    assert!(b.group_membership("g").unwrap().members.is_empty());
}

#[tokio::test]
async fn delete_group_is_refused_while_members_are_connected() {
    let b = TestBroker::open().await;
    b.create("t", 1).await;
    let m = b.join_group(join("g", "t", None)).await.unwrap();
    b.commit_as("t", "g", &[(0, 0)], Some(m.member()))
        .await
        .unwrap();
    let err = b.delete_group("g").await.unwrap_err();
    assert!(matches!(err, BrokerError::GroupHasMembers { .. }), "{err}");
    m.leave().await.unwrap();
    b.delete_group("g").await.expect("deleted");
    assert!(b.group_membership("g").is_none());
    assert!(matches!(
        b.describe_group("g"),
        Err(BrokerError::GroupNotFound(_))
    ));
    assert!(matches!(
        b.delete_group("g").await,
        Err(BrokerError::GroupNotFound(_))
    ));
}
