//! The reorder buffer: samples held until the watermark passes them, oldest first.
//!
//! Monitors send in time order nearly always, so a sorted deque beats a tree: an in-order
//! sample is a push at the back, the oldest a pop at the front, and a late one is inserted a
//! few places from the back. Samples with the same event time keep their arrival order.

use std::collections::VecDeque;

use crate::event::Values;

/// A sample as the engine holds it: event time in µs, patient and unit as table indices.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub ts: i64,
    pub patient: u32,
    pub unit: u32,
    pub values: Values,
}

#[derive(Default)]
pub(super) struct Reorder(VecDeque<Sample>);

impl Reorder {
    pub fn insert(&mut self, s: Sample) {
        if self.0.back().is_none_or(|b| b.ts <= s.ts) {
            self.0.push_back(s);
        } else {
            let at = self.0.partition_point(|x| x.ts <= s.ts);
            self.0.insert(at, s);
        }
    }

    /// The oldest sample, if it is at or before `to`.
    pub fn pop_through(&mut self, to: i64) -> Option<Sample> {
        if self.0.front()?.ts > to {
            return None;
        }
        self.0.pop_front()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: i64, patient: u32) -> Sample {
        Sample {
            ts,
            patient,
            unit: 0,
            values: crate::VitalsEvent::parse(r#"{"patient":"p","ts":"2026-01-01T00:00:00Z"}"#)
                .unwrap()
                .values(),
        }
    }

    #[test]
    fn holds_samples_in_event_time_then_arrival_order() {
        let mut r = Reorder::default();
        for (ts, p) in [(5, 0), (3, 1), (9, 2), (3, 3), (1, 4), (9, 5)] {
            r.insert(at(ts, p));
        }
        assert_eq!(r.pop_through(0).map(|s| s.patient), None);
        let order: Vec<u32> = std::iter::from_fn(|| r.pop_through(9).map(|s| s.patient)).collect();
        assert_eq!(order, [4, 1, 3, 0, 2, 5]);
        assert_eq!(r.len(), 0);
    }
}
