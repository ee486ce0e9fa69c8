//! The process's allocator: mimalloc, called the way its fast paths expect.
//!
//! The `mimalloc` crate passes every allocation to `mi_malloc_aligned`, whatever the alignment.
//! In mimalloc 3 that call keeps to the fast path only for blocks of at most 1 KiB whose free
//! list happens to be aligned; anything larger (hyper's 8 KiB read buffers, two a request) takes
//! the generic aligned path, which over-allocates by `align - 1` (8 KiB lands in the 10 KiB bin)
//! and flags the page as holding interior pointers. Every mimalloc block of 16 bytes or more is
//! 16-byte aligned already (MI_MAX_ALIGN_SIZE; on 64-bit targets all bins above the one-word bin
//! are multiples of two words), so for the alignments Rust nearly always asks for, plain
//! `mi_malloc` is exact: the rule the standard library's own `System` allocator follows with
//! malloc. Measured with `scripts/instructions.sh`: allocation 5.4k → 3.7k instructions a
//! proxied request.
//!
//! The only `unsafe` in the workspace: `GlobalAlloc` is an unsafe trait, and mimalloc is C.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment every `mi_malloc` block of at least that size has.
const MIN_ALIGN: usize = 16;

/// Whether `mi_malloc(size)` is aligned enough for `align`.
#[inline(always)]
fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

pub struct MiMalloc;

// SAFETY: every method forwards to mimalloc, which returns null on failure (never unwinds) and
// blocks aligned as `plain` requires or as asked for by the `_aligned` variants; `mi_free` and
// `mi_realloc*` accept any block either kind of call returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C calls with sizes and alignments from a valid `Layout`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block this allocator returned and a non-zero size;
        // mimalloc keeps the contents up to the smaller size, in place or in a new block.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // These run with `MiMalloc` as the global allocator (declared in main.rs, which this test
    // binary is built from), so `Vec` and `Box` go through the code above.

    /// Blocks of every size up to 4 KiB and a few larger, at each alignment up to 4 KiB, are
    /// aligned as asked, writable, and keep their contents when grown and shrunk.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        #[repr(align(32))]
        struct A32([u8; 32]);
        #[repr(align(4096))]
        struct A4096([u8; 4096]);
        let sizes = (1..=4096).chain([8191, 8192, 65536, 1 << 20]);
        for size in sizes {
            let mut v: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            v.reserve_exact(size);
            assert!(
                v.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
                "size {size}"
            );
            v.shrink_to_fit();
            assert!(
                v.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
                "size {size}"
            );
            let words: Vec<u128> = vec![7; size.div_ceil(16)];
            assert_eq!(words.as_ptr() as usize % 16, 0, "u128 x {}", words.len());
            let u64s: Vec<u64> = vec![7; size.div_ceil(8)];
            assert_eq!(u64s.as_ptr() as usize % 8, 0, "u64 x {}", u64s.len());
        }
        for n in 1..64 {
            let a: Vec<A32> = (0..n).map(|_| A32([1; 32])).collect();
            assert_eq!(a.as_ptr() as usize % 32, 0);
            let b = Box::new(A4096([2; 4096]));
            assert_eq!(&*b as *const A4096 as usize % 4096, 0);
            assert!(a.iter().all(|x| x.0 == [1; 32]) && b.0.iter().all(|x| *x == 2));
        }
    }

    #[test]
    fn zeroed_blocks_are_zero() {
        for size in [1, 7, 16, 100, 1024, 8192, 100_000] {
            let v = vec![0u8; size];
            assert!(v.iter().all(|b| *b == 0));
            let w = vec![0u128; size];
            assert_eq!(w.as_ptr() as usize % 16, 0);
            assert!(w.iter().all(|b| *b == 0));
        }
    }
}
