//! Options of senders and receivers: names, settle modes, and the source
//! and target terminus settings. By-value builders, `#[must_use]` setters.

use crate::frame::{RcvSettleMode, SndSettleMode, Source, Target};
use crate::types::{Described, Map, Symbol, Value};

/// Terminus expiry policies (spec 3.5.6).
pub mod expiry_policy {
    use crate::types::Symbol;
    /// Expire when the link detaches.
    pub const LINK_DETACH: Symbol = Symbol::from_static("link-detach");
    /// Expire when the session ends (the default).
    pub const SESSION_END: Symbol = Symbol::from_static("session-end");
    /// Expire when the connection closes.
    pub const CONNECTION_CLOSE: Symbol = Symbol::from_static("connection-close");
    /// Never expire.
    pub const NEVER: Symbol = Symbol::from_static("never");
}

/// Delivery guarantees of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// At-least-once: messages are sent unsettled and settled by the
    /// receiver's outcome. The default.
    #[default]
    AtLeastOnce,
    /// At-most-once: messages are sent presettled; no outcome comes back.
    AtMostOnce,
}

impl DeliveryMode {
    fn snd(self) -> SndSettleMode {
        match self {
            DeliveryMode::AtLeastOnce => SndSettleMode::Unsettled,
            DeliveryMode::AtMostOnce => SndSettleMode::Settled,
        }
    }
}

/// Terminus settings shared by sources and targets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Terminus {
    pub(crate) address: Option<String>,
    pub(crate) durable: u32,
    pub(crate) expiry_policy: Option<Symbol>,
    pub(crate) timeout: u32,
    pub(crate) dynamic: bool,
    pub(crate) dynamic_node_properties: Option<Map>,
    pub(crate) capabilities: Option<Vec<Symbol>>,
}

macro_rules! terminus_setters {
    ($field:ident) => {
        /// Terminus durability: 0 none (the default), 1 configuration, 2
        /// unsettled state.
        #[must_use]
        pub fn durable(mut self, durable: u32) -> Self {
            self.$field.durable = durable;
            self
        }

        /// The terminus expiry policy (see [`expiry_policy`]). Default:
        /// `session-end`.
        #[must_use]
        pub fn expiry_policy(mut self, policy: Symbol) -> Self {
            self.$field.expiry_policy = Some(policy);
            self
        }

        /// Seconds the terminus outlives its expiry trigger. Default: 0.
        #[must_use]
        pub fn timeout(mut self, seconds: u32) -> Self {
            self.$field.timeout = seconds;
            self
        }

        /// Capabilities of the terminus (for example `queue` or `topic`).
        /// Default: none.
        #[must_use]
        pub fn capabilities<I: IntoIterator<Item = S>, S: Into<Symbol>>(mut self, caps: I) -> Self {
            self.$field.capabilities = Some(caps.into_iter().map(Into::into).collect());
            self
        }

        /// The link name. Default: a unique name made from the container id
        /// and a counter.
        #[must_use]
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.name = Some(name.into());
            self
        }

        /// Delivery guarantees. Default: at-least-once.
        #[must_use]
        pub fn delivery_mode(mut self, mode: DeliveryMode) -> Self {
            self.mode = mode;
            self
        }

        /// A link property sent in attach. Default: none.
        #[must_use]
        pub fn property(mut self, key: impl Into<Symbol>, value: impl Into<Value>) -> Self {
            self.properties
                .get_or_insert_with(Map::new)
                .insert(Value::Symbol(key.into()), value.into());
            self
        }
    };
}

/// Options of a sender.
#[derive(Clone, Debug, Default)]
pub struct SenderOptions {
    pub(crate) target: Terminus,
    pub(crate) name: Option<String>,
    pub(crate) mode: DeliveryMode,
    pub(crate) properties: Option<Map>,
    pub(crate) max_in_flight: Option<usize>,
}

impl SenderOptions {
    /// Options for a sender to `address`.
    pub fn new(address: impl Into<String>) -> Self {
        let mut o = Self::default();
        o.target.address = Some(address.into());
        o
    }

    /// Options for an anonymous-relay sender: no target address; each
    /// message goes to its own `to` address.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Ask the peer to create the target node (a temporary queue).
    /// Default: false.
    #[must_use]
    pub fn dynamic(mut self, properties: Option<Map>) -> Self {
        self.target.dynamic = true;
        self.target.dynamic_node_properties = properties;
        self
    }

    /// The most unsettled sends at once; `send` waits beyond it. Default:
    /// the connection's `max_in_flight` (1024).
    #[must_use]
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = Some(max.max(1));
        self
    }

    terminus_setters!(target);

    pub(crate) fn snd_settle_mode(&self) -> SndSettleMode {
        self.mode.snd()
    }

    pub(crate) fn build_target(&self) -> Target {
        let t = &self.target;
        Target {
            address: t.address.clone(),
            durable: t.durable,
            expiry_policy: t
                .expiry_policy
                .clone()
                .unwrap_or(expiry_policy::SESSION_END),
            timeout: t.timeout,
            dynamic: t.dynamic,
            dynamic_node_properties: t.dynamic_node_properties.clone(),
            capabilities: t.capabilities.clone(),
        }
    }
}

/// Options of a receiver.
#[derive(Clone, Debug)]
pub struct ReceiverOptions {
    pub(crate) source: Terminus,
    pub(crate) name: Option<String>,
    pub(crate) mode: DeliveryMode,
    pub(crate) properties: Option<Map>,
    pub(crate) credit_window: Option<u32>,
    pub(crate) credit_window_bytes: Option<u64>,
    pub(crate) auto_accept: bool,
    pub(crate) distribution_mode: Option<Symbol>,
    pub(crate) filter: Option<Map>,
    pub(crate) rcv_settle_mode: RcvSettleMode,
    pub(crate) dedupe: usize,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            source: Terminus::default(),
            name: None,
            mode: DeliveryMode::AtLeastOnce,
            properties: None,
            credit_window: None,
            credit_window_bytes: None,
            auto_accept: true,
            distribution_mode: None,
            filter: None,
            rcv_settle_mode: RcvSettleMode::First,
            dedupe: 0,
        }
    }
}

/// The filter key of a JMS selector.
const SELECTOR_KEY: Symbol = Symbol::from_static("jms-selector");
/// The descriptor of a JMS selector filter.
const SELECTOR_DESCRIPTOR: &str = "apache.org:selector-filter:string";

impl ReceiverOptions {
    /// Options for a receiver from `address`.
    pub fn new(address: impl Into<String>) -> Self {
        let mut o = Self::default();
        o.source.address = Some(address.into());
        o
    }

    /// Options for a receiver from a node the peer creates (a temporary
    /// reply queue); its address is [`Receiver::address`](crate::Receiver::address).
    pub fn dynamic() -> Self {
        let mut o = Self::default();
        o.source.dynamic = true;
        o
    }

    /// Properties of the dynamic node. Default: none.
    #[must_use]
    pub fn dynamic_node_properties(mut self, properties: Map) -> Self {
        self.source.dynamic_node_properties = Some(properties);
        self
    }

    /// The credit window in messages: how many may be in flight to us or
    /// buffered; credit is topped up as deliveries are consumed, once half
    /// the window is free. 0 means manual credit
    /// ([`Receiver::add_credit`](crate::Receiver::add_credit)). Default: the
    /// connection's `credit_window` (1000).
    #[must_use]
    pub fn credit_window(mut self, window: u32) -> Self {
        self.credit_window = Some(window);
        self
    }

    /// The credit window in bytes: the window in messages shrinks to this
    /// over the average size of the messages seen (the first grant assumes
    /// 64 KiB each), so large messages cannot pile up. Default: the
    /// connection's `credit_window_bytes` (16 MiB).
    #[must_use]
    pub fn credit_window_bytes(mut self, bytes: u64) -> Self {
        self.credit_window_bytes = Some(bytes);
        self
    }

    /// The credit window for these options, with the connection's defaults.
    pub(crate) fn credit(&self, d: &super::connection::Defaults) -> super::credit::CreditWindow {
        super::credit::CreditWindow::new(
            self.credit_window.unwrap_or(d.credit_window),
            self.credit_window_bytes.unwrap_or(d.credit_window_bytes),
        )
    }

    /// Whether a delivery is accepted when it is dropped without being
    /// settled. When off, a dropped unsettled delivery is released (so the
    /// message is redelivered, never lost). Default: on (Proton's
    /// auto_accept).
    #[must_use]
    pub fn auto_accept(mut self, on: bool) -> Self {
        self.auto_accept = on;
        self
    }

    /// A duplicate filter: the stream skips (and accepts) a message whose
    /// message-id is among the last `n` it yielded, such as one the broker
    /// redelivers after a reconnect because our accept was lost with the
    /// connection. Messages without a message-id always pass. Default: 0
    /// (off). It costs a decode of the message's properties per delivery
    /// and memory for `n` ids.
    #[must_use]
    pub fn dedupe(mut self, n: usize) -> Self {
        self.dedupe = n;
        self
    }

    /// Distribution mode: `move` (competing consumers) or `copy` (browse).
    /// Default: the node's.
    #[must_use]
    pub fn distribution_mode(mut self, mode: impl Into<Symbol>) -> Self {
        self.distribution_mode = Some(mode.into());
        self
    }

    /// Browse the node (`copy`): messages stay for other consumers.
    #[must_use]
    pub fn browse(self) -> Self {
        self.distribution_mode("copy")
    }

    /// A filter entry of the source. Default: none.
    #[must_use]
    pub fn filter(mut self, key: impl Into<Symbol>, value: impl Into<Value>) -> Self {
        self.filter
            .get_or_insert_with(Map::new)
            .insert(Value::Symbol(key.into()), value.into());
        self
    }

    /// A JMS selector (`apache.org:selector-filter:string`).
    #[must_use]
    pub fn selector(self, selector: impl Into<String>) -> Self {
        let value = Described::new(SELECTOR_DESCRIPTOR, Value::String(selector.into()));
        self.filter(SELECTOR_KEY, value)
    }

    /// Settle only after the sender settled (`rcv-settle-mode` second).
    /// Default: first.
    #[must_use]
    pub fn settle_second(mut self) -> Self {
        self.rcv_settle_mode = RcvSettleMode::Second;
        self
    }

    terminus_setters!(source);

    pub(crate) fn build_source(&self) -> Source {
        let s = &self.source;
        Source {
            address: s.address.clone(),
            durable: s.durable,
            expiry_policy: s
                .expiry_policy
                .clone()
                .unwrap_or(expiry_policy::SESSION_END),
            timeout: s.timeout,
            dynamic: s.dynamic,
            dynamic_node_properties: s.dynamic_node_properties.clone(),
            distribution_mode: self.distribution_mode.clone(),
            filter: self.filter.clone(),
            default_outcome: None,
            outcomes: None,
            capabilities: s.capabilities.clone(),
        }
    }
}

impl From<&str> for SenderOptions {
    fn from(a: &str) -> Self {
        SenderOptions::new(a)
    }
}

impl From<String> for SenderOptions {
    fn from(a: String) -> Self {
        SenderOptions::new(a)
    }
}

impl From<&str> for ReceiverOptions {
    fn from(a: &str) -> Self {
        ReceiverOptions::new(a)
    }
}

impl From<String> for ReceiverOptions {
    fn from(a: String) -> Self {
        ReceiverOptions::new(a)
    }
}
