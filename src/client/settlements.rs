//! A receiver's settlements without a reply (a delivery dropped and
//! auto-accepted or released), gathered into runs of consecutive delivery
//! ids with the same state: the driver is told once per batch, not once per
//! delivery, and settles each run with one disposition.
//!
//! The first settlement queued after the driver last took the batch sends
//! it one [`Command::SettleBatch`]; later ones only join the batch until
//! the driver takes it. Nothing waits for a later delivery or a poll of the
//! stream, so a settlement never stays behind.

use super::driver::Command;
use crate::proto::LinkId;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The outcome of a dropped delivery: the receiver's auto-accept, or a
/// release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoState {
    Accepted,
    Released,
}

/// Consecutive deliveries of one connection (epoch) settled with one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) epoch: u64,
    pub(crate) first: u32,
    pub(crate) last: u32,
    pub(crate) state: AutoState,
}

#[derive(Debug, Default)]
struct Batch {
    runs: Vec<Run>,
    /// A `SettleBatch` command is on its way to the driver.
    notified: bool,
}

/// The settlements of one receiver link waiting for the driver.
#[derive(Debug)]
pub(crate) struct SettleQueue {
    link: LinkId,
    tx: mpsc::UnboundedSender<Command>,
    batch: Mutex<Batch>,
}

impl SettleQueue {
    pub(crate) fn new(link: LinkId, tx: mpsc::UnboundedSender<Command>) -> Arc<Self> {
        Arc::new(SettleQueue {
            link,
            tx,
            batch: Mutex::new(Batch::default()),
        })
    }

    /// The link the settlements are for.
    pub(crate) fn link(&self) -> LinkId {
        self.link
    }

    /// The channel to the connection's driver.
    pub(crate) fn commands(&self) -> &mpsc::UnboundedSender<Command> {
        &self.tx
    }

    /// Queues the settlement of delivery `id` (of connection `epoch`);
    /// tells the driver if it was not told already. False if the
    /// connection is gone.
    pub(crate) fn push(self: &Arc<Self>, epoch: u64, id: u32, state: AutoState) -> bool {
        let notify = {
            let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
            match b.runs.last_mut() {
                Some(r) if r.epoch == epoch && r.state == state && r.last.wrapping_add(1) == id => {
                    r.last = id;
                }
                _ => b.runs.push(Run {
                    epoch,
                    first: id,
                    last: id,
                    state,
                }),
            }
            !std::mem::replace(&mut b.notified, true)
        };
        !notify || self.tx.send(Command::SettleBatch(self.clone())).is_ok()
    }

    /// Takes the batch (the driver, on `SettleBatch`); the next settlement
    /// tells the driver again.
    pub(crate) fn take(&self) -> Vec<Run> {
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        b.notified = false;
        std::mem::take(&mut b.runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_settlements_share_a_run_and_one_command() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let q = SettleQueue::new(LinkId(1), tx);
        for id in [7, 8, 9] {
            assert!(q.push(0, id, AutoState::Accepted));
        }
        assert!(q.push(0, 10, AutoState::Released));
        assert!(q.push(0, 12, AutoState::Released));
        assert!(q.push(1, 13, AutoState::Released));
        let Ok(Command::SettleBatch(got)) = rx.try_recv() else {
            panic!("one command for the batch");
        };
        assert!(rx.try_recv().is_err(), "only one");
        let runs = got.take();
        let r = |epoch, first, last, state| Run {
            epoch,
            first,
            last,
            state,
        };
        assert_eq!(
            runs,
            [
                r(0, 7, 9, AutoState::Accepted),
                r(0, 10, 10, AutoState::Released),
                r(0, 12, 12, AutoState::Released),
                r(1, 13, 13, AutoState::Released),
            ]
        );
        // Taken: the next settlement tells the driver again, and ids wrap.
        assert!(q.push(1, u32::MAX, AutoState::Accepted));
        assert!(q.push(1, 0, AutoState::Accepted));
        assert!(matches!(rx.try_recv(), Ok(Command::SettleBatch(_))));
        assert_eq!(q.take(), [r(1, u32::MAX, 0, AutoState::Accepted)]);
        drop(rx);
        assert!(!q.push(1, 5, AutoState::Accepted), "the driver is gone");
    }
}
