//! Publishes whose acks are awaited in batches: the broker stores them while the publisher goes
//! on, and a bounded number is outstanding at a time.

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::publish::PublishAck;

use super::{TransportError, js_err};

/// Publishes not yet known to be stored: at most `cap` outstanding, then all are awaited.
pub(crate) struct AckWindow {
    in_flight: Vec<PublishAckFuture>,
    cap: usize,
    what: &'static str,
}

impl AckWindow {
    /// A window of `cap` publishes; `what` names them in errors.
    pub fn new(cap: usize, what: &'static str) -> Self {
        Self {
            in_flight: Vec::with_capacity(cap),
            cap,
            what,
        }
    }

    /// Holds `ack`; once `cap` are held, waits for all of them and returns their acks (empty
    /// until then).
    pub async fn push(&mut self, ack: PublishAckFuture) -> Result<Vec<PublishAck>, TransportError> {
        self.in_flight.push(ack);
        if self.in_flight.len() < self.cap {
            return Ok(Vec::new());
        }
        self.drain().await
    }

    /// Waits until the broker has stored every publish held; returns their acks in order.
    pub async fn drain(&mut self) -> Result<Vec<PublishAck>, TransportError> {
        let mut acks = Vec::with_capacity(self.in_flight.len());
        for ack in self.in_flight.drain(..) {
            acks.push(ack.await.map_err(|e| js_err(self.what, e))?);
        }
        Ok(acks)
    }
}
