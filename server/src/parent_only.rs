//! A value that lives in memory the forked children never inherit, for the state the parent
//! writes between two forks (its counters and child table).
//!
//! After a `fork` every page of the parent is shared copy-on-write with the new child, so the
//! first write to any page afterwards costs the parent a page fault and a page copy, and leaves
//! the child holding a private copy of the old page for its whole life: one such page per accept
//! is 4 KiB more in every live session. A value kept here sits in its own anonymous mapping marked
//! `MADV_DONTFORK`: the kernel leaves the mapping out of every child (nothing to share, nothing
//! to copy at fork), so the parent writes it for free. A child must never touch it (it is not
//! mapped there); `Server::become_child` forgets it without reading or dropping it.
//!
//! Layers it may import: none.
//! Crates it may import: `memmap2`.

use std::io;
use std::ops::{Deref, DerefMut};

use memmap2::{Advice, MmapMut};

pub struct ParentOnly<T: 'static> {
    /// Points into `map`, which outlives it (dropped after `value` in `Drop`).
    value: &'static mut T,
    map: MmapMut,
}

impl<T: 'static> ParentOnly<T> {
    pub fn new(value: T) -> io::Result<ParentOnly<T>> {
        // Page-aligned by mmap; a type needing more than that is not one of ours.
        assert!(std::mem::align_of::<T>() <= 4096, "over-aligned type");
        let mut map = MmapMut::map_anon(std::mem::size_of::<T>().max(1))?;
        map.advise(Advice::DontFork)?;
        let place = map.as_mut_ptr().cast::<T>();
        // SAFETY: `place` is the start of a fresh, writable, page-aligned mapping at least
        // `size_of::<T>()` long that nothing else refers to; `write` moves `value` in without
        // reading the old bytes. The reference never outlives the mapping: both live in the
        // returned struct, whose `Drop` drops the value before the mapping is unmapped, and no
        // method hands out a reference that outlives a borrow of `self`.
        let value = unsafe {
            place.write(value);
            &mut *place
        };
        Ok(ParentOnly { value, map })
    }

    /// Whether `address` lies inside this value's mapping (for tests and diagnostics).
    pub fn contains_address(&self, address: usize) -> bool {
        let start = self.map.as_ptr() as usize;
        (start..start + self.map.len()).contains(&address)
    }
}

impl<T: 'static> Deref for ParentOnly<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: 'static> DerefMut for ParentOnly<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

impl<T: 'static> Drop for ParentOnly<T> {
    fn drop(&mut self) {
        // SAFETY: the value was written in `new` and is dropped exactly once, here; `map` (the
        // memory under it) is unmapped only afterwards, when the fields are dropped.
        unsafe { std::ptr::drop_in_place(std::ptr::from_mut(self.value)) }
    }
}

/// Test support: the `VmFlags:` line of this process's mapping that starts at `start`
/// (`/proc/self/smaps`); MADV_DONTFORK shows there as `dc`.
#[cfg(test)]
pub(crate) fn vm_flags_at(start: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    smaps
        .split_once(&format!("{start:x}-"))
        .and_then(|(_, rest)| rest.lines().find(|l| l.starts_with("VmFlags:")))
        .unwrap()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn holds_and_drops_its_value_once() {
        let marker = Rc::new(());
        let mut held = ParentOnly::new((Rc::clone(&marker), 5_u64)).unwrap();
        held.1 += 1;
        assert_eq!(held.1, 6);
        assert!(held.contains_address(std::ptr::from_ref(&held.1) as usize));
        assert_eq!(Rc::strong_count(&marker), 2);
        drop(held);
        assert_eq!(Rc::strong_count(&marker), 1);
    }

    #[test]
    fn the_mapping_is_marked_dont_fork() {
        let held = ParentOnly::new([0_u8; 64]).unwrap();
        let flags = vm_flags_at(held.map.as_ptr() as usize);
        assert!(
            flags.contains(" dc"),
            "MADV_DONTFORK shows as `dc`: {flags}"
        );
    }
}
