//! Helpers shared by integration tests. Each test binary uses a subset.

pub(crate) mod proxy;
pub(crate) mod raw_peer;
