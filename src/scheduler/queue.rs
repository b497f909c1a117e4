//! The scheduling queue, as kube-scheduler's: pods ready to try now (highest priority
//! first, then oldest), pods backing off after a failed attempt (1 s doubling to 10 s),
//! and pods that fit nowhere, parked until something in the cluster changes (or five
//! minutes pass). Pure: the caller passes the time.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The first backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long an unschedulable pod waits at most for a cluster change.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// A pod's queue identity: `namespace/name`.
pub type Key = String;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    priority: i32,
    /// When the pod first entered the queue; older first among equals.
    since: Instant,
    key: Key,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.since.cmp(&other.since))
            .then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Popped (at this time) and being scheduled or bound.
    InFlight(Instant),
}

#[derive(Clone, Debug)]
struct State {
    entry: Entry,
    place: Place,
    attempts: u32,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Queue {
    active: BTreeSet<Entry>,
    pods: HashMap<Key, State>,
    /// When each waiting pod is due, earliest first, so a tick looks only at those due.
    timers: BTreeSet<(Instant, Key)>,
    /// The last change in the cluster, so that a pod found unschedulable by a cycle that
    /// started before it is retried rather than parked.
    last_change: Option<Instant>,
}

/// When a waiting pod is due back in the active queue.
fn due(place: Place) -> Option<Instant> {
    match place {
        Place::Backoff(until) => Some(until),
        Place::Unschedulable(since) => Some(since + MAX_UNSCHEDULABLE),
        _ => None,
    }
}

/// How long a pod backs off after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

impl Queue {
    /// Adds a pending pod, or updates its priority; a pod already known keeps its place.
    pub fn add(&mut self, key: &str, priority: i32, now: Instant) {
        if let Some(state) = self.pods.get_mut(key) {
            if state.entry.priority != priority && state.place == Place::Active {
                self.active.remove(&state.entry);
                state.entry.priority = priority;
                self.active.insert(state.entry.clone());
            }
            state.entry.priority = priority;
            return;
        }
        let entry = Entry {
            priority,
            since: now,
            key: key.to_string(),
        };
        self.active.insert(entry.clone());
        self.pods.insert(
            key.to_string(),
            State {
                entry,
                place: Place::Active,
                attempts: 0,
            },
        );
    }

    /// Forgets a pod (deleted, or bound by someone).
    pub fn remove(&mut self, key: &str) {
        if let Some(state) = self.pods.remove(key) {
            self.active.remove(&state.entry);
            if let Some(due) = due(state.place) {
                self.timers.remove(&(due, key.to_string()));
            }
        }
    }

    /// Moves a pod to `place`, keeping the timers in step.
    fn place(&mut self, key: &str, place: Place) {
        let Some(state) = self.pods.get_mut(key) else {
            return;
        };
        if let Some(old) = due(state.place) {
            self.timers.remove(&(old, key.to_string()));
        }
        state.place = place;
        if let Some(new) = due(place) {
            self.timers.insert((new, key.to_string()));
        }
        if place == Place::Active {
            self.active.insert(state.entry.clone());
        }
    }

    /// Whether the queue knows the pod.
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Moves backed-off pods whose time has come, and unschedulable pods that waited too
    /// long, to the active queue.
    pub fn tick(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.place(&key, Place::Active);
        }
    }

    /// Whether a pod is ready to be tried now.
    pub fn has_ready(&mut self, now: Instant) -> bool {
        if self.active.is_empty() && self.next_ready().is_some_and(|t| t <= now) {
            self.tick(now);
        }
        !self.active.is_empty()
    }

    /// The next pod to schedule, if one is ready.
    pub fn pop(&mut self, now: Instant) -> Option<Key> {
        self.tick(now);
        let entry = self.active.pop_first()?;
        if let Some(state) = self.pods.get_mut(&entry.key) {
            state.attempts += 1;
        }
        self.place(&entry.key, Place::InFlight(now));
        Some(entry.key)
    }

    /// When the next backed-off pod becomes ready, if any waits.
    pub fn next_ready(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// A popped pod failed for a passing reason (a binding error): it backs off.
    pub fn retry(&mut self, key: &str, now: Instant) {
        if let Some(attempts) = self.pods.get(key).map(|s| s.attempts) {
            self.place(key, Place::Backoff(now + backoff(attempts)));
        }
    }

    /// A popped pod fits nowhere: it waits for a change in the cluster, or backs off if
    /// the cluster changed while it was being tried.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let last_change = self.last_change;
        if let Some(state) = self.pods.get(key) {
            let place = match state.place {
                Place::InFlight(popped) if last_change.is_some_and(|c| c >= popped) => {
                    Place::Backoff(now + backoff(state.attempts))
                }
                _ => Place::Unschedulable(now),
            };
            self.place(key, place);
        }
    }

    /// Something changed that may let unschedulable pods fit (a node came or changed, a
    /// pod went): they go back, through their backoff.
    pub fn cluster_changed(&mut self, now: Instant) {
        self.last_change = Some(now);
        let parked: Vec<(Key, Instant, u32)> = self
            .pods
            .iter()
            .filter_map(|(k, s)| match s.place {
                Place::Unschedulable(since) => Some((k.clone(), since, s.attempts)),
                _ => None,
            })
            .collect();
        for (key, since, attempts) in parked {
            let until = since + backoff(attempts);
            let place = if until <= now {
                Place::Active
            } else {
                Place::Backoff(until)
            };
            self.place(&key, place);
        }
    }

    /// How many pods are queued in any state.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod is queued.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_then_older_pods_come_first() {
        let (mut q, t) = (Queue::default(), Instant::now());
        q.add("a/low", 0, t);
        q.add("a/high", 100, t + Duration::from_millis(1));
        q.add("a/low2", 0, t + Duration::from_millis(2));
        assert_eq!(q.pop(t).as_deref(), Some("a/high"));
        assert_eq!(q.pop(t).as_deref(), Some("a/low"));
        assert_eq!(q.pop(t).as_deref(), Some("a/low2"));
        assert_eq!(q.pop(t), None);
    }

    #[test]
    fn failed_pods_back_off_doubling_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(10));
        let (mut q, t) = (Queue::default(), Instant::now());
        q.add("a/p", 0, t);
        assert!(q.pop(t).is_some());
        q.retry("a/p", t);
        assert_eq!(q.pop(t + Duration::from_millis(999)), None);
        assert_eq!(q.next_ready(), Some(t + Duration::from_secs(1)));
        assert_eq!(q.pop(t + Duration::from_secs(1)).as_deref(), Some("a/p"));
        q.retry("a/p", t);
        assert_eq!(
            q.pop(t + Duration::from_secs(1)),
            None,
            "the second backoff is longer"
        );
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_never_in_a_hot_loop() {
        let (mut q, t) = (Queue::default(), Instant::now());
        q.add("a/p", 0, t);
        q.pop(t);
        q.unschedulable("a/p", t);
        assert_eq!(q.pop(t + Duration::from_secs(60)), None, "nothing changed");
        q.cluster_changed(t + Duration::from_secs(60));
        assert_eq!(q.pop(t + Duration::from_secs(60)).as_deref(), Some("a/p"));
        q.unschedulable("a/p", t + Duration::from_secs(60));
        assert_eq!(
            q.pop(t + Duration::from_secs(60) + MAX_UNSCHEDULABLE)
                .as_deref(),
            Some("a/p"),
            "retried after five minutes anyway"
        );
        // A change while the pod was being tried sends it to backoff, not to the pool.
        let later = t + Duration::from_secs(400);
        q.pop(later);
        q.cluster_changed(later);
        q.unschedulable("a/p", later);
        assert!(q.pop(later + MAX_BACKOFF).is_some());
        q.remove("a/p");
        assert!(q.is_empty());
    }
}
