//! Starts the accept loop at the top of a stack page, so that the stack a fork touches is one
//! page, not two.
//!
//! Between two forks the parent writes only the stack below `Server::run`'s frame (its books are
//! in memory no child inherits, see `ParentOnly`), and a child writes the same frames plus its
//! session's below them: about 3 KiB together, less than a page. But the kernel starts the stack
//! at a random offset within its page (ASLR), so in most runs those 3 KiB straddle a page
//! boundary, and then every child keeps two private stack pages instead of one (4 KiB more per
//! live session) and the parent takes a second copy-on-write fault per accept. Measured on the
//! same binary: 28 KiB PSS per child in runs where the loop happened to sit in one page, 32 KiB
//! where it did not.
//!
//! `at_page_top` moves the stack pointer down to just under the next page boundary by recursing
//! through padded frames (plain safe code: each frame checks its own address), then calls the
//! loop there. It costs at most one page of stack, once.
//!
//! Layers it may import: none.
//! Crates it may import: none.

/// The page size on every target this server builds for (x86_64 and aarch64 Linux with 4 KiB
/// pages; on a larger page size the loop simply fits more easily).
const PAGE: usize = 4096;
/// Room left above the loop's first frame in its page: the recursion stops once it is this far
/// under a boundary, so the closure's own call frames sit in the page too.
const HEADROOM: usize = 192;
/// Padding per recursion step; the steps stop on the address, so its exact frame size is moot.
const STEP: usize = 256;
/// More steps than a page needs, in case the compiler ever made the frames smaller.
const MAX_STEPS: usize = 2 * PAGE / 64;

/// Runs `f` with its first frame just under a page boundary (see the module docs).
pub fn at_page_top<R>(f: impl FnOnce() -> R) -> R {
    let boundary = stack_address() & !(PAGE - 1);
    descend(boundary, MAX_STEPS, f)
}

#[inline(never)]
fn descend<R>(boundary: usize, steps_left: usize, f: impl FnOnce() -> R) -> R {
    let here = stack_address();
    if steps_left == 0 || here + HEADROOM <= boundary {
        return f();
    }
    let padding = [0_u8; STEP];
    std::hint::black_box(&padding);
    let result = descend(boundary, steps_left - 1, f);
    // Used after the call, so the recursion is no tail call and each frame stays on the stack.
    std::hint::black_box(&padding);
    result
}

/// An address in the caller's current stack frame.
#[inline(always)]
fn stack_address() -> usize {
    let marker = 0_u8;
    std::ptr::from_ref(std::hint::black_box(&marker)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn frame_address() -> usize {
        stack_address()
    }

    #[test]
    fn the_closure_runs_near_the_top_of_a_page() {
        for _ in 0..3 {
            let offset = at_page_top(frame_address) % PAGE;
            // Under the boundary by the headroom plus a frame or two, far from the page's bottom.
            assert!(offset >= PAGE - 1024, "offset in page {offset}");
        }
    }

    #[test]
    fn it_returns_what_the_closure_returns() {
        assert_eq!(at_page_top(|| 42), 42);
    }
}
