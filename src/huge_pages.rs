//! Where a block of memory may be backed by transparent huge pages (pure arithmetic; the
//! global allocator in `main.rs` does the `madvise`).

/// The size of a transparent huge page on x86-64 and most aarch64 kernels.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// The 2 MiB-aligned range inside the block at `start` of `size` bytes, as (start, length), if
/// the block is at least `worthy_bytes` long and holds at least one whole huge page.
pub fn aligned_interior(start: usize, size: usize, worthy_bytes: usize) -> Option<(usize, usize)> {
    if start == 0 || size < worthy_bytes.max(HUGE_PAGE_BYTES) {
        return None;
    }
    let end = start.checked_add(size)?;
    let first = start.checked_next_multiple_of(HUGE_PAGE_BYTES)?;
    let last = end / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    (last > first).then(|| (first, last - first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_blocks_and_null_get_no_advice() {
        assert_eq!(aligned_interior(HUGE_PAGE_BYTES, HUGE_PAGE_BYTES - 1, 0), None);
        assert_eq!(aligned_interior(0, 64 << 20, 0), None);
        assert_eq!(aligned_interior(HUGE_PAGE_BYTES, 8 << 20, 32 << 20), None);
    }

    #[test]
    fn an_aligned_block_is_advised_whole() {
        assert_eq!(aligned_interior(4 * HUGE_PAGE_BYTES, 64 << 20, 32 << 20), Some((4 * HUGE_PAGE_BYTES, 64 << 20)));
    }

    #[test]
    fn a_block_straddling_one_boundary_without_a_whole_page_gets_none() {
        assert_eq!(aligned_interior(HUGE_PAGE_BYTES + 16, HUGE_PAGE_BYTES, 0), None);
    }

    proptest! {
        #[test]
        fn the_advised_range_is_aligned_and_inside_the_block(
            start in 1usize..(1 << 40),
            size in 0usize..(1 << 30),
        ) {
            if let Some((first, length)) = aligned_interior(start, size, 0) {
                prop_assert_eq!(first % HUGE_PAGE_BYTES, 0);
                prop_assert_eq!(length % HUGE_PAGE_BYTES, 0);
                prop_assert!(length > 0);
                prop_assert!(first >= start);
                prop_assert!(first + length <= start + size);
                // Nothing whole is left out: less than a huge page on either side.
                prop_assert!(first - start < HUGE_PAGE_BYTES);
                prop_assert!(start + size - (first + length) < HUGE_PAGE_BYTES);
            } else {
                prop_assert!(size < 2 * HUGE_PAGE_BYTES || start == 0);
            }
        }
    }
}
