//! Metrics of the HTTP server: how many connections are open, the limit, why connections ended, and
//! how many responses were shed. An operator sees a flood (evictions, header timeouts) here before
//! anything else notices.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a connection ended (a fixed set of label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The request was answered.
    Complete,
    /// The client did not send a whole request head in time.
    HeaderTimeout,
    /// The connection outlived its deadline (a client that does not read its answer).
    Deadline,
    /// Closed to make room for another client's connection.
    Evicted,
    /// A malformed request or a client that went away.
    Error,
    /// The agent was shutting down.
    Shutdown,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Complete => "complete",
            Closed::HeaderTimeout => "header_timeout",
            Closed::Deadline => "deadline",
            Closed::Evicted => "evicted",
            Closed::Error => "error",
            Closed::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The HTTP server's metrics (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    open: Gauge,
    limit: Gauge,
    closed: Family<ReasonLabel, Counter>,
    shed: Counter,
}

impl HttpMetrics {
    /// Registers the metrics (`http_*` under the registry's prefix).
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics::default();
        registry.register("http_connections", "Open HTTP connections", m.open.clone());
        registry.register("http_connection_limit", "Most HTTP connections kept at once", m.limit.clone());
        registry.register("http_connections_closed", "HTTP connections by why they ended", m.closed.clone());
        registry.register(
            "http_responses_shed",
            "Responses replaced by 503 because the response memory budget was spent",
            m.shed.clone(),
        );
        m
    }

    /// Metrics nobody renders (tests).
    pub fn unregistered() -> HttpMetrics {
        HttpMetrics::default()
    }

    pub(super) fn set_limit(&self, limit: usize) {
        self.limit.set(limit as i64);
    }

    pub(super) fn opened(&self) {
        self.open.inc();
    }

    pub(super) fn closed(&self, why: Closed) {
        self.open.dec();
        self.closed.get_or_create(&ReasonLabel { reason: why.as_str() }).inc();
    }

    pub(super) fn response_shed(&self) {
        self.shed.inc();
    }

    /// Connections that ended for `why` so far.
    pub fn closed_count(&self, why: Closed) -> u64 {
        self.closed.get_or_create(&ReasonLabel { reason: why.as_str() }).get()
    }

    /// Responses shed so far.
    pub fn shed_count(&self) -> u64 {
        self.shed.get()
    }

    /// Connections open now.
    pub fn open_count(&self) -> i64 {
        self.open.get()
    }
}
