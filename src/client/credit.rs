//! A receiver's credit window, bounded by messages and by bytes.
//!
//! A fixed count is slow for small messages when small and dangerous for
//! large ones when large. The window here is the smaller of `messages` and
//! `bytes / (average message size)`, the average adapting to the sizes
//! seen; credit is topped up once at least half the window is free, in one
//! flow. "Outstanding" counts credit granted and not yet consumed by the
//! application: deliveries buffered, in flight, or still allowed, so it
//! bounds what can pile up in memory.

/// The size assumed before any message was seen: the first grant is at
/// most `bytes / ASSUMED_SIZE` messages.
const ASSUMED_SIZE: u64 = 64 * 1024;

/// The credit state of one receiver.
#[derive(Debug, Clone)]
pub(crate) struct CreditWindow {
    messages: u32,
    bytes: u64,
    /// Average size of the messages consumed (0: none yet).
    average: u64,
    outstanding: u32,
}

impl CreditWindow {
    /// A window of at most `messages` messages and `bytes` bytes; 0
    /// messages means manual credit (no window).
    pub(crate) fn new(messages: u32, bytes: u64) -> Self {
        CreditWindow {
            messages,
            bytes: bytes.max(1),
            average: 0,
            outstanding: 0,
        }
    }

    /// The window now, in messages.
    pub(crate) fn window(&self) -> u32 {
        if self.messages == 0 {
            return 0;
        }
        let size = if self.average == 0 {
            ASSUMED_SIZE
        } else {
            self.average
        };
        let by_bytes = (self.bytes / size).clamp(1, u64::from(u32::MAX)) as u32;
        self.messages.min(by_bytes)
    }

    /// The credit to grant at attach (counted as outstanding).
    pub(crate) fn initial(&mut self) -> u32 {
        let w = self.window();
        self.outstanding = w;
        w
    }

    /// The link was attached again without credit: the credit to grant,
    /// a whole window (what the lost link had outstanding is gone).
    pub(crate) fn restart(&mut self) -> u32 {
        let w = self.window();
        self.outstanding = w;
        w
    }

    /// A delivery of `size` bytes was consumed: the credit to add now (0:
    /// not yet; credit goes out once half the window is free).
    pub(crate) fn consumed(&mut self, size: usize) -> u32 {
        let size = size.max(1) as u64;
        self.average = if self.average == 0 {
            size
        } else {
            (self.average * 7 + size) / 8
        };
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.messages == 0 {
            return 0;
        }
        let w = self.window();
        let room = w.saturating_sub(self.outstanding);
        if room >= (w / 2).max(1) {
            self.outstanding += room;
            room
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_get_the_whole_count() {
        let mut c = CreditWindow::new(1000, 16 << 20);
        assert_eq!(c.initial(), 256, "16 MiB at an assumed 64 KiB");
        // The first small message opens the window to the count at once.
        assert_eq!(c.consumed(100), 745);
        assert_eq!(c.window(), 1000);
        let later: u32 = (0..1000).map(|_| c.consumed(100)).sum();
        assert_eq!(later, 1000, "then one grant per half window");
    }

    #[test]
    fn large_messages_are_bounded_by_bytes() {
        let mut c = CreditWindow::new(1000, 16 << 20);
        c.initial();
        let mut outstanding = 256u32;
        for _ in 0..2000 {
            outstanding -= 1;
            outstanding += c.consumed(1 << 20);
            assert!(outstanding <= 256);
        }
        assert_eq!(c.window(), 16);
        assert!(outstanding <= 16, "{outstanding}");
    }

    #[test]
    fn tops_up_once_per_half_window() {
        let mut c = CreditWindow::new(10, u64::MAX);
        assert_eq!(c.initial(), 10);
        let grants: Vec<u32> = (0..10).map(|_| c.consumed(10)).collect();
        assert_eq!(grants, [0, 0, 0, 0, 5, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn manual_credit_is_never_topped_up() {
        let mut c = CreditWindow::new(0, 1 << 20);
        assert_eq!(c.initial(), 0);
        assert_eq!(c.consumed(10), 0);
    }

    #[test]
    fn a_window_of_one_still_moves() {
        let mut c = CreditWindow::new(1000, 1);
        assert_eq!(c.initial(), 1);
        assert_eq!(c.consumed(10), 1);
        assert_eq!(c.consumed(10), 1);
    }
}
