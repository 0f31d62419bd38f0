//! The delivery check `paired` and `fanout` share: messages carry a sequence number per
//! sender, readers see them through `/sync`, and every (reader, message) delivery is checked
//! to happen exactly once, in the sender's order, with the body unchanged, and timed from the
//! start of its `PUT`.

use crate::provisioning::RunPrefix;
use anyhow::{Result, anyhow};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The content key that numbers a sender's messages, so that the reader can tell a lost,
/// repeated, reordered or altered message apart without trusting the body it checks.
pub const SEQUENCE_KEY: &str = "hearth_bench_seq";
/// At most this many validity problems are listed; the counts cover all of them.
const MAX_LISTED_PROBLEMS: usize = 20;

/// The content of message `sequence` from `sender`, with a body unique in the whole run, so
/// that any alteration or mix-up between senders shows.
pub fn content_of(prefix: &RunPrefix, sender: &str, sequence: u32) -> Value {
    json!({"msgtype": "m.text", "body": body_of(prefix, sender, sequence), SEQUENCE_KEY: sequence})
}

fn body_of(prefix: &RunPrefix, sender: &str, sequence: u32) -> String {
    format!("hearth-bench {} from {sender} #{sequence}", prefix.as_str())
}

/// Send start times by (sender, sequence number), written before each `PUT` starts so that a
/// reader can never see an event whose start is not recorded yet.
#[derive(Clone, Default)]
pub struct SendStarts(Arc<Mutex<HashMap<(String, u32), Instant>>>);

impl SendStarts {
    pub fn record(&self, sender: &str, sequence: u32, start: Instant) -> Result<()> {
        self.0.lock().map_err(|_| anyhow!("a task panicked"))?.insert((sender.to_owned(), sequence), start);
        Ok(())
    }

    fn get(&self, sender: &str, sequence: u32) -> Result<Option<Instant>> {
        Ok(self.0.lock().map_err(|_| anyhow!("a task panicked"))?.get(&(sender.to_owned(), sequence)).copied())
    }
}

/// What the validity check found on one server. `valid` is true only when every message was
/// delivered exactly once, in order and unaltered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Validity {
    pub valid: bool,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub altered: u64,
    /// Readers whose `/sync` failed (an error answer, a request timeout): what they had not
    /// received yet counts as missing.
    pub failed_readers: u64,
    /// The first problems found, in words.
    pub problems: Vec<String>,
}

impl Validity {
    pub fn expecting(expected: u64) -> Validity {
        Validity { expected, ..Validity::default() }
    }

    /// Adds one reader's findings.
    pub fn add(&mut self, log: &DeliveryLog) {
        self.delivered += log.delivered;
        self.missing += log.missing();
        self.duplicates += log.duplicates;
        self.out_of_order += log.out_of_order;
        self.altered += log.altered;
        self.failed_readers += u64::from(log.failure.is_some());
        for problem in log.problems.iter().chain(log.missing_problem().as_ref()) {
            if self.problems.len() < MAX_LISTED_PROBLEMS {
                self.problems.push(problem.clone());
            }
        }
    }

    /// Settles the verdict once every reader has been added.
    pub fn conclude(&mut self) {
        self.valid = self.delivered == self.expected
            && self.missing == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.altered == 0
            && self.failed_readers == 0;
    }
}

/// What one reader saw of one sender's messages.
pub struct DeliveryLog {
    sender: String,
    reader: String,
    seen: Vec<bool>,
    /// The highest sequence number delivered so far: anything below it that arrives later
    /// is out of order (or a duplicate, if it was seen).
    highest: Option<u32>,
    pub latencies: Vec<Duration>,
    pub last_delivery: Option<Instant>,
    pub delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    altered: u64,
    failure: Option<String>,
    problems: Vec<String>,
}

impl DeliveryLog {
    pub fn new(sender: &str, reader: &str, messages: u32) -> DeliveryLog {
        DeliveryLog {
            sender: sender.to_owned(),
            reader: reader.to_owned(),
            seen: vec![false; messages as usize],
            highest: None,
            latencies: Vec::new(),
            last_delivery: None,
            delivered: 0,
            duplicates: 0,
            out_of_order: 0,
            altered: 0,
            failure: None,
            problems: Vec::new(),
        }
    }

    pub fn complete(&self) -> bool {
        self.delivered >= self.seen.len() as u64
    }

    /// Checks the timeline events of one `/sync` answer that returned at `returned`; events
    /// of other senders or types are not this log's business. Returns how many were new
    /// deliveries.
    pub fn observe(
        &mut self,
        prefix: &RunPrefix,
        events: &[Value],
        returned: Instant,
        starts: &SendStarts,
    ) -> Result<u64> {
        let mut new = 0;
        for event in events {
            if event["sender"].as_str() != Some(self.sender.as_str())
                || event["type"].as_str() != Some("m.room.message")
            {
                continue;
            }
            let content = &event["content"];
            let Some(sequence) = content[SEQUENCE_KEY].as_u64().and_then(|s| u32::try_from(s).ok()) else {
                self.altered += 1;
                self.problem(format!("a message from {} lost its sequence number: {content}", self.sender));
                continue;
            };
            let Some(slot) = self.seen.get_mut(sequence as usize) else {
                self.altered += 1;
                self.problem(format!("{} never sent a message #{sequence}", self.sender));
                continue;
            };
            if *slot {
                self.duplicates += 1;
                self.problem(format!("message #{sequence} from {} reached {} twice", self.sender, self.reader));
                continue;
            }
            *slot = true;
            if self.highest.is_some_and(|highest| sequence < highest) {
                self.out_of_order += 1;
                self.problem(format!("message #{sequence} from {} arrived after a later one", self.sender));
            }
            self.highest = self.highest.max(Some(sequence));
            if *content != content_of(prefix, &self.sender, sequence) {
                self.altered += 1;
                self.problem(format!("message #{sequence} from {} arrived altered: {content}", self.sender));
            }
            if let Some(start) = starts.get(&self.sender, sequence)? {
                self.latencies.push(returned.duration_since(start));
            }
            self.delivered += 1;
            self.last_delivery = Some(returned);
            new += 1;
        }
        Ok(new)
    }

    /// Ends this reader with a failed `/sync`: a server that cannot answer a long-poll in
    /// time failed the check, which the report says, rather than ending the whole run.
    pub fn fail(&mut self, error: &anyhow::Error) {
        let text = format!("{} stopped reading: {error:#}", self.reader);
        self.problem(text.clone());
        self.failure = Some(text);
    }

    fn missing(&self) -> u64 {
        self.seen.iter().filter(|seen| !**seen).count() as u64
    }

    fn missing_problem(&self) -> Option<String> {
        let missing = self.missing();
        (missing > 0).then(|| format!("{missing} of {}'s messages never reached {}", self.sender, self.reader))
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_per_run_sender_and_sequence() {
        let (a, b) = (RunPrefix::random(), RunPrefix::random());
        assert_ne!(body_of(&a, "@x:h", 1), body_of(&b, "@x:h", 1));
        assert_ne!(body_of(&a, "@x:h", 1), body_of(&a, "@y:h", 1));
        assert_ne!(body_of(&a, "@x:h", 1), body_of(&a, "@x:h", 2));
    }

    fn event(prefix: &RunPrefix, sequence: u32) -> Value {
        json!({"type": "m.room.message", "sender": "@s:h", "content": content_of(prefix, "@s:h", sequence)})
    }

    #[test]
    fn duplicates_reordering_and_losses_are_counted() {
        let prefix = RunPrefix::random();
        let starts = SendStarts::default();
        let mut log = DeliveryLog::new("@s:h", "@r:h", 4);
        let events = [event(&prefix, 1), event(&prefix, 0), event(&prefix, 1)];
        assert_eq!(log.observe(&prefix, &events, Instant::now(), &starts).expect("observe"), 2);
        let mut validity = Validity::expecting(4);
        validity.add(&log);
        validity.conclude();
        assert!(!validity.valid);
        assert_eq!((validity.delivered, validity.missing, validity.duplicates, validity.out_of_order), (2, 2, 1, 1));
    }
}
