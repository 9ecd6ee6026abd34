//! One partition's in-flight window of a shared group (pure: no I/O, time passed in).
//!
//! Offsets below the position are done. From the position to `next` (the first offset never
//! handed out) every offset has a 16-byte cell: available (maybe not before some time),
//! locked to a member until a deadline, on its way to the dead-letter topic, or done out of
//! order. The front cell is never done (done cells at the front are dropped and the position
//! moves on), so the position is the first offset not done. Memory is bounded by the cap on
//! the window's span (`next - position`): 16 bytes a cell, plus a member table and the reasons
//! members gave (kept only for records that have one).
//!
//! Every change marks the offset dirty; the state log ([`super::log`]) writes the dirty cells
//! of a call as one delta.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::config::SharedGroupConfig;

/// What a cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Done = 0,
    /// May be handed out from the cell's time on.
    Available = 1,
    /// Handed out to the cell's member until its time.
    Locked = 2,
    /// Going to the dead-letter topic: the intent is stored before the write, with the
    /// dead-letter partition's end offset at that moment, so recovery scans only from there.
    DeadLettering = 3,
}

impl State {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Done,
            1 => Self::Available,
            2 => Self::Locked,
            3 => Self::DeadLettering,
            _ => return None,
        })
    }
}

/// One offset of the window: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    /// Available from / locked until, in ns since the window's epoch.
    at: u64,
    /// Index in the window's member table (locked cells).
    member: u32,
    /// Hand-outs so far (at most `MAX_DELIVERIES`).
    deliveries: u16,
    state: State,
}

const _: () = assert!(std::mem::size_of::<Cell>() == 16);

/// The most deliveries a group may allow (a cell counts them in 16 bits).
pub const MAX_DELIVERIES: u32 = u16::MAX as u32;

/// A member table larger than this is rebuilt from the locked cells at the next new member.
const MEMBERS_GC_AT: usize = 1024;

/// One cell as the log and the snapshot see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellView<'a> {
    pub state: State,
    pub deliveries: u32,
    /// Locked cells: the member.
    pub member: &'a str,
    /// Available from / locked until (available and locked cells).
    pub at: Instant,
    /// Dead-lettering cells: the dead-letter partition's end offset when the intent was made.
    pub dlq_from: u64,
    pub reason: &'a str,
}

/// How a member settles one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleAction {
    /// Done.
    Accept,
    /// Give it back: available after `delay` (`None`: the group's backoff).
    Release {
        delay: Option<Duration>,
        reason: String,
    },
    /// Straight to the dead-letter topic.
    Reject { reason: String },
    /// Still working: the lock lasts another ack timeout.
    Extend,
    /// Handed out but never sent (the member's stream closed first): available again now,
    /// and the hand-out is not counted, so it cannot push the record to the dead-letter topic.
    /// Not a member's choice: the consume stream gives records back this way.
    NotSent,
}

/// What a settle did to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    Available,
    Extended,
    /// It must go to the dead-letter topic (its state is `DeadLettering` once the caller set it).
    DeadLetter,
}

/// Why a settle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleRefused {
    #[error("offset {0} is done already (or before the group's position)")]
    Done(u64),
    #[error("offset {0} was never handed out")]
    NotHandedOut(u64),
    #[error(
        "offset {offset} is not locked to member {member:?} (its lock expired or it is another member's)"
    )]
    NotLocked { offset: u64, member: String },
}

#[derive(Debug, Clone)]
pub struct Window {
    /// The offset of `cells[0]`: the position.
    base: u64,
    cells: VecDeque<Cell>,
    /// Cell times count from here.
    epoch: Instant,
    members: Vec<Arc<str>>,
    member_ids: HashMap<Arc<str>, u32>,
    /// The member interned last (a hand-out locks all its records to one member).
    last_member: Option<(Arc<str>, u32)>,
    /// The last reason a member gave (release or reject), or why the broker gave up.
    reasons: HashMap<u64, String>,
    /// Dead-lettering cells → the dead-letter partition's end offset at the intent.
    dlq_from: HashMap<u64, u64>,
    /// Cells not done, locked, available.
    open: usize,
    locked: usize,
    available: usize,
    /// No lock ends before this / no available cell is due before this (lower bounds, exact
    /// after a scan): a hand-out scans the window only when one of them has passed.
    lock_floor: u64,
    available_floor: u64,
    /// Offsets changed since the last [`Window::take_dirty`], and whether the bounds moved.
    dirty: Vec<u64>,
    bounds_dirty: bool,
}

impl Window {
    /// An empty window whose next offset is `next`.
    pub fn new(next: u64, now: Instant) -> Self {
        Self {
            base: next,
            cells: VecDeque::new(),
            epoch: now,
            members: Vec::new(),
            member_ids: HashMap::new(),
            last_member: None,
            reasons: HashMap::new(),
            dlq_from: HashMap::new(),
            open: 0,
            locked: 0,
            available: 0,
            lock_floor: u64::MAX,
            available_floor: u64::MAX,
            dirty: Vec::new(),
            bounds_dirty: true,
        }
    }

    /// The first offset not done.
    pub fn position(&self) -> u64 {
        self.base
    }

    /// The first offset never handed out.
    pub fn next(&self) -> u64 {
        self.base + self.cells.len() as u64
    }

    /// Records not done (available, locked or going to the dead-letter topic).
    pub fn in_flight(&self) -> usize {
        self.open
    }

    /// Records locked to a member right now (an expired lock counts until a hand-out ends it).
    pub fn locked(&self) -> usize {
        self.locked
    }

    /// Bytes the window holds in cells (its deque's capacity), for the memory figure.
    pub fn cell_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>()
    }

    fn tick(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_nanos(tick)
    }

    fn index(&self, offset: u64) -> Option<usize> {
        let i = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        (i < self.cells.len()).then_some(i)
    }

    /// Moves cell `i` to `to`, keeping the counters.
    fn set_state(&mut self, i: usize, to: State) {
        let from = self.cells[i].state;
        let count = |s: State, d: isize, w: &mut Self| match s {
            State::Done => {}
            State::Available => w.available = w.available.wrapping_add_signed(d),
            State::Locked => w.locked = w.locked.wrapping_add_signed(d),
            State::DeadLettering => {}
        };
        count(from, -1, self);
        count(to, 1, self);
        if from == State::Done && to != State::Done {
            self.open += 1;
        } else if from != State::Done && to == State::Done {
            self.open -= 1;
        }
        self.cells[i].state = to;
    }

    /// Drops done cells at the front: the position moves on.
    fn pop_done(&mut self) {
        while self.cells.front().is_some_and(|c| c.state == State::Done) {
            self.cells.pop_front();
            self.base += 1;
            self.bounds_dirty = true;
        }
    }

    /// Forgets a cell's side data (it is done).
    fn forget(&mut self, offset: u64) {
        if !self.reasons.is_empty() {
            self.reasons.remove(&offset);
        }
        if !self.dlq_from.is_empty() {
            self.dlq_from.remove(&offset);
        }
    }

    /// Drops what retention removed: offsets below `log_start` are gone.
    pub fn clamp_to(&mut self, log_start: u64) {
        if log_start <= self.base {
            return;
        }
        while self.base < log_start {
            if self.cells.is_empty() {
                self.base = log_start;
                break;
            }
            self.set_state(0, State::Done);
            let o = self.base;
            self.forget(o);
            self.cells.pop_front();
            self.base += 1;
        }
        self.bounds_dirty = true;
        self.pop_done();
    }

    /// Ends expired locks: the record becomes available after the backoff, or, after its last
    /// delivery, must go to the dead-letter topic (returned; still locked until the caller
    /// marks it [`Window::set_dead_lettering`]).
    pub fn expire(&mut self, now: Instant, config: &SharedGroupConfig) -> Vec<u64> {
        let mut dead = Vec::new();
        let now_t = self.tick(now);
        if self.locked == 0 || now_t < self.lock_floor {
            return dead;
        }
        let mut floor = u64::MAX;
        for i in 0..self.cells.len() {
            let c = self.cells[i];
            if c.state != State::Locked {
                continue;
            }
            if c.at > now_t {
                floor = floor.min(c.at);
                continue;
            }
            let offset = self.base + i as u64;
            if u32::from(c.deliveries) >= config.max_deliveries {
                self.reasons
                    .entry(offset)
                    .or_insert_with(|| "ack timeout".into());
                dead.push(offset);
                // Its dead letter is written next; until then it stays here, expired.
                floor = floor.min(c.at);
            } else {
                let at = self.tick(now + config.backoff.delay(u32::from(c.deliveries)));
                self.cells[i].at = at;
                self.set_state(i, State::Available);
                self.available_floor = self.available_floor.min(at);
                self.dirty.push(offset);
            }
        }
        self.lock_floor = floor;
        dead
    }

    /// Available offsets due at `now`, in order, at most `max`.
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<u64> {
        let now_t = self.tick(now);
        let mut out = Vec::new();
        if self.available == 0 || now_t < self.available_floor || max == 0 {
            return out;
        }
        let mut floor = u64::MAX;
        for (i, c) in self.cells.iter().enumerate() {
            if c.state != State::Available {
                continue;
            }
            if c.at <= now_t && out.len() < max {
                out.push(self.base + i as u64);
            } else {
                floor = floor.min(c.at);
            }
        }
        self.available_floor = floor;
        out
    }

    /// Room for offsets never handed out, under the cap on the window's span.
    pub fn room(&self, cap: usize) -> usize {
        cap.saturating_sub(self.cells.len())
    }

    fn intern(&mut self, member: &Arc<str>) -> u32 {
        if let Some((m, id)) = &self.last_member
            && Arc::ptr_eq(m, member)
        {
            return *id;
        }
        if let Some(&id) = self.member_ids.get(member) {
            self.last_member = Some((Arc::clone(member), id));
            return id;
        }
        if self.members.len() >= MEMBERS_GC_AT {
            self.collect_members();
        }
        let id = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        self.members.push(Arc::clone(member));
        self.member_ids.insert(Arc::clone(member), id);
        self.last_member = Some((Arc::clone(member), id));
        id
    }

    /// Rebuilds the member table from the locked cells.
    fn collect_members(&mut self) {
        let old = std::mem::take(&mut self.members);
        self.member_ids.clear();
        self.last_member = None;
        let mut remap: HashMap<u32, u32> = HashMap::new();
        for c in self.cells.iter_mut().filter(|c| c.state == State::Locked) {
            let id = *remap.entry(c.member).or_insert_with(|| {
                let id = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
                let name = Arc::clone(&old[c.member as usize]);
                self.members.push(Arc::clone(&name));
                self.member_ids.insert(name, id);
                id
            });
            c.member = id;
        }
    }

    /// Locks an offset to `member` (a new one at `next`, or an available one), counting a
    /// delivery; returns the delivery count.
    pub fn lock(&mut self, offset: u64, member: &Arc<str>, until: Instant) -> u32 {
        let m = self.intern(member);
        let at = self.tick(until);
        if offset >= self.next() {
            // Offsets the log skipped (none in a dense partition) are done.
            while self.next() < offset {
                self.cells.push_back(Cell {
                    at: 0,
                    member: 0,
                    deliveries: 0,
                    state: State::Done,
                });
            }
            self.cells.push_back(Cell {
                at: 0,
                member: 0,
                deliveries: 0,
                state: State::Done,
            });
            self.bounds_dirty = true;
        }
        let i = self.index(offset).expect("locking an offset in the window");
        let c = &mut self.cells[i];
        c.deliveries = c.deliveries.saturating_add(1);
        c.member = m;
        c.at = at;
        let deliveries = u32::from(c.deliveries);
        self.set_state(i, State::Locked);
        self.lock_floor = self.lock_floor.min(at);
        self.dirty.push(offset);
        self.pop_done();
        deliveries
    }

    /// Settles one record for `member`.
    ///
    /// # Errors
    /// The record is done, never handed out, or not locked to `member`.
    pub fn settle(
        &mut self,
        offset: u64,
        member: &str,
        action: &SettleAction,
        now: Instant,
        config: &SharedGroupConfig,
    ) -> Result<Settled, SettleRefused> {
        if offset >= self.next() {
            return Err(SettleRefused::NotHandedOut(offset));
        }
        let Some(i) = self.index(offset) else {
            return Err(SettleRefused::Done(offset));
        };
        let c = self.cells[i];
        if c.state == State::Done {
            return Err(SettleRefused::Done(offset));
        }
        let now_t = self.tick(now);
        if !(c.state == State::Locked
            && *self.members[c.member as usize] == *member
            && c.at > now_t)
        {
            return Err(SettleRefused::NotLocked {
                offset,
                member: member.to_string(),
            });
        }
        self.dirty.push(offset);
        Ok(match action {
            SettleAction::Accept => {
                self.finish(offset);
                Settled::Done
            }
            SettleAction::Extend => {
                let at = self.tick(now + config.ack_timeout);
                self.cells[i].at = at;
                Settled::Extended
            }
            SettleAction::Reject { reason } => {
                let reason = if reason.is_empty() {
                    "rejected".into()
                } else {
                    reason.clone()
                };
                self.reasons.insert(offset, reason);
                Settled::DeadLetter
            }
            SettleAction::NotSent => {
                let at = self.tick(now);
                self.cells[i].at = at;
                self.cells[i].deliveries = c.deliveries.saturating_sub(1);
                self.set_state(i, State::Available);
                self.available_floor = self.available_floor.min(at);
                Settled::Available
            }
            SettleAction::Release { delay, reason } => {
                if !reason.is_empty() {
                    self.reasons.insert(offset, reason.clone());
                }
                if u32::from(c.deliveries) >= config.max_deliveries {
                    self.reasons
                        .entry(offset)
                        .or_insert_with(|| "released after the last delivery".into());
                    Settled::DeadLetter
                } else {
                    let delay =
                        delay.unwrap_or_else(|| config.backoff.delay(u32::from(c.deliveries)));
                    let at = self.tick(now + delay);
                    self.cells[i].at = at;
                    self.set_state(i, State::Available);
                    self.available_floor = self.available_floor.min(at);
                    Settled::Available
                }
            }
        })
    }

    /// Marks a record done (accepted, dead-lettered, or gone from the log).
    pub fn finish(&mut self, offset: u64) {
        if let Some(i) = self.index(offset) {
            self.set_state(i, State::Done);
            self.forget(offset);
            self.dirty.push(offset);
            self.pop_done();
        }
    }

    /// Marks a record as going to the dead-letter topic (the intent).
    pub fn set_dead_lettering(&mut self, offset: u64, dlq_from: u64) {
        if let Some(i) = self.index(offset)
            && self.cells[i].state != State::Done
        {
            self.set_state(i, State::DeadLettering);
            self.dlq_from.insert(offset, dlq_from);
            self.dirty.push(offset);
        }
    }

    /// When something next becomes due (an available record or a lock expiring); may be
    /// early (a hand-out then finds nothing and looks again), never late.
    pub fn next_due(&self) -> Option<Instant> {
        let mut t = u64::MAX;
        if self.locked > 0 {
            t = t.min(self.lock_floor);
        }
        if self.available > 0 {
            t = t.min(self.available_floor);
        }
        (t != u64::MAX).then(|| self.instant(t))
    }

    /// Offsets whose dead letter is to be written (or checked, after a crash), in order.
    pub fn dead_lettering(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<_> = self.dlq_from.iter().map(|(&o, &f)| (o, f)).collect();
        v.sort_unstable();
        v
    }

    /// Deliveries of the records not done, by offset.
    pub fn deliveries(&self) -> BTreeMap<u64, u32> {
        self.cells
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Done)
            .map(|(i, c)| (self.base + i as u64, u32::from(c.deliveries)))
            .collect()
    }

    /// The cells of the records not done, in offset order.
    pub fn cells(&self) -> impl Iterator<Item = (u64, CellView<'_>)> + '_ {
        self.cells
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Done)
            .map(|(i, _)| {
                let o = self.base + i as u64;
                (o, self.view(o))
            })
    }

    /// One offset's cell (a done one for offsets outside the window).
    pub fn view(&self, offset: u64) -> CellView<'_> {
        let done = CellView {
            state: State::Done,
            deliveries: 0,
            member: "",
            at: self.epoch,
            dlq_from: 0,
            reason: "",
        };
        let Some(i) = self.index(offset) else {
            return done;
        };
        let c = self.cells[i];
        if c.state == State::Done {
            return done;
        }
        CellView {
            state: c.state,
            deliveries: u32::from(c.deliveries),
            member: if c.state == State::Locked {
                &self.members[c.member as usize]
            } else {
                ""
            },
            at: self.instant(c.at),
            dlq_from: if self.dlq_from.is_empty() {
                0
            } else {
                self.dlq_from.get(&offset).copied().unwrap_or(0)
            },
            reason: if self.reasons.is_empty() {
                ""
            } else {
                self.reasons.get(&offset).map_or("", String::as_str)
            },
        }
    }

    /// Sets a cell as stored (loading a snapshot or replaying the log): the window grows to
    /// `offset` with done cells when needed.
    pub fn restore(&mut self, offset: u64, cell: &CellView<'_>) {
        if offset < self.base {
            return;
        }
        while self.next() <= offset {
            self.cells.push_back(Cell {
                at: 0,
                member: 0,
                deliveries: 0,
                state: State::Done,
            });
        }
        let i = self.index(offset).expect("grown to the offset");
        self.forget(offset);
        if cell.state == State::Done {
            self.set_state(i, State::Done);
            self.pop_done();
            return;
        }
        let member = if cell.state == State::Locked {
            self.intern(&Arc::from(cell.member))
        } else {
            0
        };
        let at = self.tick(cell.at);
        let c = &mut self.cells[i];
        c.deliveries = u16::try_from(cell.deliveries).unwrap_or(u16::MAX);
        c.member = member;
        c.at = at;
        self.set_state(i, cell.state);
        match cell.state {
            State::Locked => self.lock_floor = self.lock_floor.min(at),
            State::Available => self.available_floor = self.available_floor.min(at),
            State::DeadLettering => {
                self.dlq_from.insert(offset, cell.dlq_from);
            }
            State::Done => {}
        }
        if !cell.reason.is_empty() {
            self.reasons.insert(offset, cell.reason.to_string());
        }
        self.pop_done();
    }

    /// Sets the bounds as stored: offsets below `position` are done, the window reaches `next`.
    pub fn restore_bounds(&mut self, position: u64, next: u64) {
        while self.next() < next {
            self.cells.push_back(Cell {
                at: 0,
                member: 0,
                deliveries: 0,
                state: State::Done,
            });
        }
        self.clamp_to(position);
        self.pop_done();
    }

    /// The offsets changed since the last call (sorted, once each), and whether the bounds
    /// moved; clears both.
    pub fn take_dirty(&mut self) -> (Vec<u64>, bool) {
        let mut d = std::mem::take(&mut self.dirty);
        d.sort_unstable();
        d.dedup();
        (d, std::mem::replace(&mut self.bounds_dirty, false))
    }

    /// Whether anything changed since the last [`Window::take_dirty`].
    pub fn is_dirty(&self) -> bool {
        self.bounds_dirty || !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SharedGroupConfig {
        SharedGroupConfig {
            max_deliveries: 2,
            ..SharedGroupConfig::new("g")
        }
    }

    #[test]
    fn position_is_the_first_offset_not_done() {
        let c = config();
        let now = Instant::now();
        let until = now + c.ack_timeout;
        let mut w = Window::new(10, now);
        for o in 10..14 {
            w.lock(o, &"a".into(), until);
        }
        assert_eq!(w.position(), 10);
        assert_eq!(
            w.settle(11, "a", &SettleAction::Accept, now, &c),
            Ok(Settled::Done)
        );
        assert_eq!(w.position(), 10);
        assert_eq!(w.in_flight(), 3);
        assert_eq!(
            w.settle(10, "a", &SettleAction::Accept, now, &c),
            Ok(Settled::Done)
        );
        assert_eq!(w.position(), 12);
        assert_eq!(
            w.settle(11, "a", &SettleAction::Accept, now, &c),
            Err(SettleRefused::Done(11))
        );
        assert_eq!(
            w.settle(12, "b", &SettleAction::Accept, now, &c),
            Err(SettleRefused::NotLocked {
                offset: 12,
                member: "b".into()
            })
        );
        assert_eq!(
            w.settle(20, "a", &SettleAction::Accept, now, &c),
            Err(SettleRefused::NotHandedOut(20))
        );
        assert_eq!((w.in_flight(), w.locked(), w.next()), (2, 2, 14));
    }

    #[test]
    fn expired_lock_redelivers_then_dead_letters() {
        let c = config();
        let now = Instant::now();
        let mut w = Window::new(0, now);
        w.lock(0, &"a".into(), now + c.ack_timeout);
        assert!(w.due(now, 10).is_empty());
        let later = now + c.ack_timeout;
        assert!(w.expire(later, &c).is_empty());
        assert_eq!(w.due(later, 10), vec![0]);
        assert_eq!(w.lock(0, &"b".into(), later + c.ack_timeout), 2);
        assert_eq!(w.expire(later + c.ack_timeout, &c), vec![0]);
        assert_eq!(w.view(0).reason, "ack timeout");
    }

    #[test]
    fn release_with_delay_is_due_only_after_it() {
        let c = config();
        let now = Instant::now();
        let mut w = Window::new(0, now);
        w.lock(0, &"a".into(), now + c.ack_timeout);
        let release = SettleAction::Release {
            delay: Some(Duration::from_secs(5)),
            reason: "busy".into(),
        };
        assert_eq!(w.settle(0, "a", &release, now, &c), Ok(Settled::Available));
        assert!(w.due(now + Duration::from_millis(4999), 10).is_empty());
        assert_eq!(w.next_due(), Some(now + Duration::from_secs(5)));
        assert_eq!(w.due(now + Duration::from_secs(5), 10), vec![0]);
        assert_eq!(w.view(0).reason, "busy");
    }

    #[test]
    fn restoring_every_cell_gives_the_same_window() {
        let c = config();
        let now = Instant::now();
        let mut w = Window::new(5, now);
        for o in 5..12 {
            w.lock(o, &format!("m{}", o % 3).into(), now + c.ack_timeout);
        }
        w.settle(6, "m0", &SettleAction::Accept, now, &c).unwrap();
        let rel = SettleAction::Release {
            delay: None,
            reason: "later".into(),
        };
        w.settle(7, "m1", &rel, now, &c).unwrap();
        w.set_dead_lettering(8, 42);
        let mut r = Window::new(w.position(), now);
        for (o, v) in w.cells() {
            r.restore(o, &v);
        }
        r.restore_bounds(w.position(), w.next());
        assert_eq!(r.cells().collect::<Vec<_>>(), w.cells().collect::<Vec<_>>());
        assert_eq!(
            (r.position(), r.next(), r.in_flight(), r.locked()),
            (w.position(), w.next(), w.in_flight(), w.locked())
        );
        assert_eq!(r.dead_lettering(), vec![(8, 42)]);
    }

    #[test]
    fn the_member_table_is_collected_and_locks_keep_their_member() {
        let c = config();
        let now = Instant::now();
        let mut w = Window::new(0, now);
        for o in 0..3000u64 {
            w.lock(o, &format!("m{o}").into(), now + c.ack_timeout);
            if o != 7 {
                w.settle(o, &format!("m{o}"), &SettleAction::Accept, now, &c)
                    .unwrap();
            }
        }
        assert!(w.members.len() <= MEMBERS_GC_AT + 1, "{}", w.members.len());
        assert_eq!(w.view(7).member, "m7");
        assert_eq!(w.position(), 7);
    }

    #[test]
    fn a_record_not_sent_is_available_again_with_its_hand_out_uncounted() {
        let c = SharedGroupConfig {
            max_deliveries: 1,
            ..SharedGroupConfig::new("g")
        };
        let now = Instant::now();
        let mut w = Window::new(0, now);
        let until = now + c.ack_timeout;
        assert_eq!(w.lock(0, &"a".into(), until), 1);
        assert_eq!(
            w.settle(0, "a", &SettleAction::NotSent, now, &c),
            Ok(Settled::Available)
        );
        // Handed out again, it is its first delivery still; a release after it (the last
        // delivery) is what sends it to the dead-letter topic.
        assert_eq!(w.lock(0, &"b".into(), until), 1);
        let release = SettleAction::Release {
            delay: None,
            reason: String::new(),
        };
        assert_eq!(w.settle(0, "b", &release, now, &c), Ok(Settled::DeadLetter));
    }
}
