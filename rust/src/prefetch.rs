//! A cache prefetch hint: the one use of `unsafe` in the crate.
//!
//! Keyed state for many keys does not fit in cache, so the engine resolves a batch's keys to
//! state slots first and then, while processing event `i`, asks the CPU to fetch the state of
//! events `i + D` ahead. A prefetch has no architectural effect: it cannot fault, read or
//! write anything visible, so any address is sound; we only pass addresses of live references.

/// Hints the CPU to bring every cache line of `value` (a value or a slice) into all cache
/// levels.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = std::ptr::from_ref(value).cast::<i8>();
        let mut offset = 0;
        while offset < std::mem::size_of_val(value) {
            // SAFETY: `_mm_prefetch` only hints the cache; it never faults or has an observable
            // effect, whatever the address, and SSE is part of the x86_64 baseline.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    start.wrapping_add(offset),
                );
            }
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
