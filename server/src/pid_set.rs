//! The set of live child pids, kept in memory that the children never inherit.
//!
//! After a `fork` every page of the parent is shared copy-on-write with the new child, so each
//! page the parent writes afterwards costs a page fault in the parent and leaves the child
//! holding a private copy of the old page. The parent writes this set after every fork and every
//! reap; in an ordinary heap table (a `HashSet`) that cost about one page of memory per live
//! child and one fault per accept. Here the set lives in an anonymous mapping marked
//! `MADV_DONTFORK`: the kernel leaves it out of every child (no copy-on-write, no page tables to
//! copy at fork), and a child that touched it would fault at once instead of reading stale data.
//! The child never does: `Server::become_child` forgets the table without dropping it.
//!
//! The layout is open addressing with linear probing over native-endian `i32` slots, 0 marking a
//! free slot (no child has pid 0), at most half full; removal shifts the following entries back
//! instead of leaving tombstones, so a long-running server never degrades.
//!
//! Layers it may import: none.
//! Crates it may import: `memmap2`, `nix`.

use std::io;

use memmap2::{Advice, MmapMut};
use nix::unistd::Pid;

const SLOT_BYTES: usize = std::mem::size_of::<i32>();
/// One 4 KiB page of slots; the set doubles from there.
const MIN_SLOTS: usize = 1024;

pub struct PidSet {
    /// `capacity()` slots, a power of two, mapped `MADV_DONTFORK`.
    slots: MmapMut,
    len: usize,
}

impl PidSet {
    pub fn new() -> io::Result<PidSet> {
        Ok(PidSet {
            slots: map_slots(MIN_SLOTS)?,
            len: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn capacity(&self) -> usize {
        self.slots.len() / SLOT_BYTES
    }

    fn slot(&self, index: usize) -> i32 {
        let at = index * SLOT_BYTES;
        let mut bytes = [0; SLOT_BYTES];
        bytes.copy_from_slice(&self.slots[at..at + SLOT_BYTES]);
        i32::from_ne_bytes(bytes)
    }

    fn set_slot(&mut self, index: usize, pid: i32) {
        let at = index * SLOT_BYTES;
        self.slots[at..at + SLOT_BYTES].copy_from_slice(&pid.to_ne_bytes());
    }

    /// The slot where `pid`'s probe starts (Fibonacci hashing: pids are sequential, and the
    /// multiplication spreads neighbours over the table).
    fn home(&self, pid: i32) -> usize {
        let bits = self.capacity().trailing_zeros();
        ((u64::from(pid as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> (64 - bits)) as usize
    }

    /// Makes room for `additional` more pids without growing in `insert`. Called before forking,
    /// so that running out of memory stops the accepting, not the recording of a live child.
    pub fn reserve(&mut self, additional: usize) -> io::Result<()> {
        let needed = self.len + additional;
        if needed * 2 <= self.capacity() {
            return Ok(());
        }
        let capacity = (needed * 2).next_power_of_two();
        let old = std::mem::replace(&mut self.slots, map_slots(capacity)?);
        self.len = 0;
        for index in 0..old.len() / SLOT_BYTES {
            let at = index * SLOT_BYTES;
            let mut bytes = [0; SLOT_BYTES];
            bytes.copy_from_slice(&old[at..at + SLOT_BYTES]);
            let pid = i32::from_ne_bytes(bytes);
            if pid != 0 {
                self.insert(Pid::from_raw(pid));
            }
        }
        Ok(())
    }

    /// Adds `pid`; returns false if it was already there. Grows the set when it would be more
    /// than half full; should growing fail (see `reserve`), the set fills up further and only a
    /// completely full set refuses, returning false.
    pub fn insert(&mut self, pid: Pid) -> bool {
        let raw = pid.as_raw();
        if raw == 0 {
            return false;
        }
        if (self.len + 1) * 2 > self.capacity() {
            // A failed growth only matters once the set is full; `reserve` reports it earlier.
            let _ = self.reserve(1);
        }
        if self.len == self.capacity() {
            return false;
        }
        let mask = self.capacity() - 1;
        let mut index = self.home(raw);
        loop {
            match self.slot(index) {
                0 => {
                    self.set_slot(index, raw);
                    self.len += 1;
                    return true;
                }
                found if found == raw => return false,
                _ => index = (index + 1) & mask,
            }
        }
    }

    fn find(&self, raw: i32) -> Option<usize> {
        if raw == 0 {
            return None;
        }
        let mask = self.capacity() - 1;
        let mut index = self.home(raw);
        for _ in 0..self.capacity() {
            match self.slot(index) {
                0 => return None,
                found if found == raw => return Some(index),
                _ => index = (index + 1) & mask,
            }
        }
        None
    }

    pub fn contains(&self, pid: Pid) -> bool {
        self.find(pid.as_raw()).is_some()
    }

    /// Takes `pid` out; returns whether it was there. The entries after it in its probe run
    /// move back into the gap where their own probe would pass it (backward-shift deletion).
    pub fn remove(&mut self, pid: Pid) -> bool {
        let Some(mut gap) = self.find(pid.as_raw()) else {
            return false;
        };
        let mask = self.capacity() - 1;
        let mut next = (gap + 1) & mask;
        loop {
            let raw = self.slot(next);
            if raw == 0 {
                break;
            }
            // `raw` may fill the gap if its home is not between the gap and its slot (cyclically).
            let home = self.home(raw);
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(gap) & mask) {
                self.set_slot(gap, raw);
                gap = next;
            }
            next = (next + 1) & mask;
        }
        self.set_slot(gap, 0);
        self.len -= 1;
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = Pid> + '_ {
        (0..self.capacity())
            .map(|index| self.slot(index))
            .filter(|&raw| raw != 0)
            .map(Pid::from_raw)
    }

    pub fn clear(&mut self) {
        self.slots.fill(0);
        self.len = 0;
    }
}

/// An anonymous, private, zero-filled mapping of `slots` slots that no child inherits.
fn map_slots(slots: usize) -> io::Result<MmapMut> {
    let map = MmapMut::map_anon(slots * SLOT_BYTES)?;
    map.advise(Advice::DontFork)?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(raw: i32) -> Pid {
        Pid::from_raw(raw)
    }

    #[test]
    fn inserts_finds_and_removes_through_growth() {
        let mut set = PidSet::new().unwrap();
        for raw in 1..=5000 {
            assert!(set.insert(pid(raw)));
        }
        assert!(!set.insert(pid(77)), "no duplicates");
        assert_eq!(set.len(), 5000);
        assert!(set.capacity() >= 10_000);
        // Remove every other one: the backward shift must keep the rest findable.
        for raw in (1..=5000).step_by(2) {
            assert!(set.remove(pid(raw)));
        }
        assert!(!set.remove(pid(1)));
        for raw in 1..=5000 {
            assert_eq!(set.contains(pid(raw)), raw % 2 == 0, "{raw}");
        }
        let mut left: Vec<i32> = set.iter().map(Pid::as_raw).collect();
        left.sort_unstable();
        assert_eq!(left, (2..=5000).step_by(2).collect::<Vec<_>>());
        set.clear();
        assert!(set.is_empty() && set.iter().next().is_none());
    }

    #[test]
    fn colliding_runs_survive_removal_in_any_order() {
        // Pids whose probes collide and wrap around the end of a small table.
        let mut set = PidSet::new().unwrap();
        let pids: Vec<i32> = (1..=400).map(|i| i * 1024 + 7).collect();
        for &raw in &pids {
            set.insert(pid(raw));
        }
        for (n, &raw) in pids.iter().enumerate().rev() {
            assert!(set.remove(pid(raw)));
            assert!(pids[..n].iter().all(|&p| set.contains(pid(p))));
        }
        assert!(set.is_empty());
    }

    #[test]
    fn pid_zero_is_never_a_member() {
        let mut set = PidSet::new().unwrap();
        assert!(!set.insert(pid(0)));
        assert!(!set.contains(pid(0)));
        assert!(set.is_empty());
    }

    #[test]
    fn the_mapping_is_marked_dont_fork() {
        // The integration tests check that a real child lacks the mapping.
        let mut set = PidSet::new().unwrap();
        set.insert(pid(42));
        let flags = crate::parent_only::vm_flags_at(set.slots.as_ptr() as usize);
        assert!(
            flags.contains(" dc"),
            "MADV_DONTFORK shows as `dc`: {flags}"
        );
    }
}
