use std::time::Duration;

use berth_core::{CloseReason, ConnId};
use tokio::sync::mpsc;

use super::{Command, RECV_CHUNK, take_waiting};

fn closed(conn: u64) -> Command {
    Command::Closed {
        conn: ConnId(conn),
        reason: CloseReason::ConnectionLost,
    }
}

fn conns(taken: &[Command]) -> Vec<u64> {
    taken
        .iter()
        .map(|command| match command {
            Command::Closed { conn, .. } => conn.0,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn waiting_commands_are_taken_in_order_a_chunk_at_a_time_and_their_slots_returned() {
    let total = RECV_CHUNK + 10;
    let (sender, mut receiver) = mpsc::channel(total);
    for conn in 0..total as u64 {
        sender.try_send(closed(conn)).unwrap();
    }
    assert!(sender.try_send(closed(999)).is_err(), "the channel is full");

    let mut taken = Vec::new();
    take_waiting(&mut receiver, &mut taken, usize::MAX);
    assert_eq!(conns(&taken), (0..RECV_CHUNK as u64).collect::<Vec<_>>());
    // Their slots are free again: senders waiting for room go on.
    for conn in 0..RECV_CHUNK as u64 {
        sender.try_send(closed(1000 + conn)).unwrap();
    }

    taken.clear();
    take_waiting(&mut receiver, &mut taken, usize::MAX);
    assert_eq!(taken.len(), RECV_CHUNK, "a chunk at most");
    assert_eq!(
        conns(&taken[..10]),
        (RECV_CHUNK as u64..total as u64).collect::<Vec<_>>()
    );
    assert_eq!(conns(&taken[10..11]), [1000]);

    taken.clear();
    take_waiting(&mut receiver, &mut taken, 3);
    assert_eq!(
        conns(&taken),
        [
            1000 + RECV_CHUNK as u64 - 10,
            1001 + RECV_CHUNK as u64 - 10,
            1002 + RECV_CHUNK as u64 - 10
        ],
        "no more than the group's room"
    );
}

#[tokio::test]
async fn an_empty_channel_takes_nothing_and_a_later_command_still_wakes_the_wait() {
    let (sender, mut receiver) = mpsc::channel(8);
    let mut taken = Vec::new();
    take_waiting(&mut receiver, &mut taken, usize::MAX);
    assert!(taken.is_empty());

    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.send(closed(7)).await.unwrap();
        sender
    });
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        receiver.recv_many(&mut taken, RECV_CHUNK),
    )
    .await;
    assert_eq!(got.ok(), Some(1), "the wait after a no-op poll is woken");
    assert_eq!(conns(&taken), [7]);
    drop(later.await);
}
