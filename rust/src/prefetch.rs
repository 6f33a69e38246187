//! Memory hints, the only uses of `unsafe` in the crate: a cache prefetch and a huge-page advice.
//!
//! Keyed state for many keys does not fit in cache, so the engine resolves a batch's keys to
//! state slots first and then, while processing event `i`, asks the CPU to fetch the state of
//! events `i + D` ahead. A prefetch has no architectural effect: it cannot fault, read or
//! write anything visible, so any address is sound; we only pass addresses of live references.
//! Large key tables are also advised onto transparent huge pages (Linux), which keeps their
//! address translations in the TLB; that changes how memory is backed, never what it holds.

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

/// Hints the kernel to back the allocation of `v` (its whole capacity) with transparent huge
/// pages, where it holds whole 2 MiB pages. Keyed state for many keys is read at random: with
/// 4 KiB pages nearly every event's state also misses the TLB (a page walk), with 2 MiB pages
/// the translations of a large table stay cached. Like a prefetch it has no architectural
/// effect (`madvise(MADV_HUGEPAGE)` changes how memory is backed, never what it holds; the
/// call fails harmlessly where huge pages are unsupported or disabled), and it only names
/// memory of the live allocation of `v`, rounded inwards to huge-page bounds.
#[inline]
#[allow(unsafe_code)]
pub fn advise_huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
        if bytes < HUGE {
            return;
        }
        let start = v.as_ptr().addr();
        let lo = start.next_multiple_of(HUGE);
        let hi = (start + bytes) & !(HUGE - 1);
        if hi > lo {
            // SAFETY: `madvise(MADV_HUGEPAGE)` on a page-aligned range inside the live
            // allocation of `v` only changes how the kernel backs those pages; contents are
            // preserved, and an error (huge pages unsupported or disabled) changes nothing, so
            // its result is ignored. The pointer is derived from `v`'s own allocation.
            unsafe {
                libc::madvise(
                    v.as_ptr().cast::<u8>().cast_mut().add(lo - start).cast(),
                    hi - lo,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_keeps_contents() {
        for n in [0usize, 1, 1000, 3 << 20] {
            let v: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
            let before = v.clone();
            advise_huge_pages(&v);
            prefetch(v.as_slice());
            assert_eq!(v, before);
        }
    }
}
