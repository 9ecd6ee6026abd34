//! The read side, over the protocols that have one (gRPC and REST): the same error for the same
//! mistake, with the same message.

use crate::clients::{Parity, Read, rec};
use crate::table::{Outcome, PROTOCOLS, Protocol, Scenario, expected};
use crate::{check, check_same_message};

/// Runs `op` on `topic` over every protocol that offers it, checks each against the table and
/// the messages against each other.
async fn read_scenario(parity: &mut Parity, scenario: Scenario, topic: &str, op: Read) {
    let mut seen = Vec::new();
    for protocol in PROTOCOLS {
        if expected(scenario, protocol) == Outcome::NotOffered {
            continue;
        }
        let s = parity.read(protocol, topic, &op).await;
        check(scenario, protocol, &s, &format!("{op:?}"));
        seen.push((protocol, s));
    }
    check_same_message(scenario, &seen, &[]);
}

/// Topic "r": one partition holding one record.
async fn one_record() -> Parity {
    let mut parity = Parity::start().await;
    parity.create_topic("r", 1).await;
    let seen = parity.produce(Protocol::Grpc, "r", &rec("k", "v")).await;
    check(
        Scenario::ProduceThenRead,
        Protocol::Grpc,
        &seen,
        "the one record",
    );
    parity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_past_the_log_end_is_out_of_range_everywhere() {
    let mut parity = one_record().await;
    let op = Read::Fetch {
        partition: 0,
        offset: 5,
    };
    read_scenario(&mut parity, Scenario::FetchBeyondEnd, "r", op).await;
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_from_a_missing_partition_is_invalid_everywhere() {
    let mut parity = one_record().await;
    let op = Read::Fetch {
        partition: 9,
        offset: 0,
    };
    read_scenario(&mut parity, Scenario::FetchMissingPartition, "r", op).await;
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_an_unknown_topic_is_not_found_everywhere() {
    let mut parity = one_record().await;
    let fetch = Read::Fetch {
        partition: 0,
        offset: 0,
    };
    read_scenario(&mut parity, Scenario::ReadUnknownTopic, "missing", fetch).await;
    let poll = Read::Poll { group: "g".into() };
    read_scenario(&mut parity, Scenario::ReadUnknownTopic, "missing", poll).await;
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_with_a_bad_group_name_is_invalid_everywhere() {
    let mut parity = one_record().await;
    for group in ["", "bad group", "a/b", ".."] {
        let op = Read::Poll {
            group: group.into(),
        };
        read_scenario(&mut parity, Scenario::PollBadGroupName, "r", op).await;
    }
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_past_the_log_end_is_out_of_range_everywhere() {
    let mut parity = one_record().await;
    let op = Read::Commit {
        group: "g".into(),
        partition: 0,
        offset: 2,
    };
    read_scenario(&mut parity, Scenario::CommitBeyondEnd, "r", op).await;
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describing_an_unknown_group_is_not_found_everywhere() {
    let mut parity = one_record().await;
    let op = Read::DescribeGroup {
        group: "nobody".into(),
    };
    read_scenario(&mut parity, Scenario::DescribeUnknownGroup, "r", op).await;
    parity.stop().await;
}
