use clap::Parser;

/// The system allocator, with small zeroed allocations made by `malloc` and cleared here.
///
/// glibc's `calloc` bypasses the per-thread cache and takes its arena's lock on every call, and
/// bincode decodes every string through a zeroed buffer: opening the writer's snapshot (millions
/// of strings on two threads) spent an eighth of its time in `calloc` and its lock. Large zeroed
/// allocations still go to `calloc`, which can hand out fresh pages the kernel has zeroed.
///
/// Large blocks (the clustering's matrix of windows, 100 MB for 20 000 x 1280) are marked for
/// transparent huge pages where the kernel leaves that to the program (`madvise` mode, Debian's
/// default): the neighbour search reads 5 KB rows at random across the matrix, and with 4 KiB
/// pages nearly every row read missed the TLB.
struct SmallZeroedThroughMalloc;

const SMALL_ZEROED_BYTES: usize = 4096;

/// Blocks from this size on are advised to use huge pages.
const HUGE_PAGE_WORTHY_BYTES: usize = 32 << 20;

/// Marks the 2 MiB-aligned pages inside a large block for transparent huge pages. Advice only:
/// the pages the block has not touched yet fault in as huge pages; a failure changes nothing.
#[inline]
fn advise_huge_pages(block: *mut u8, size: usize) {
    if size < HUGE_PAGE_WORTHY_BYTES {
        return; // every small allocation: one comparison
    }
    #[cfg(target_os = "linux")]
    if let Some((start, length)) = humpback::huge_pages::aligned_interior(block as usize, size, HUGE_PAGE_WORTHY_BYTES)
    {
        // SAFETY: the range lies inside a block this allocator just handed out; MADV_HUGEPAGE
        // changes how the kernel backs it, never its contents.
        unsafe { libc::madvise(start as *mut libc::c_void, length, libc::MADV_HUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (block, size);
}

// SAFETY: every call forwards to `System` with the caller's layout; `alloc_zeroed` clears exactly
// the `layout.size()` bytes `System.alloc` returned for that layout.
unsafe impl std::alloc::GlobalAlloc for SmallZeroedThroughMalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let allocated = unsafe { std::alloc::System.alloc(layout) };
        advise_huge_pages(allocated, layout.size());
        allocated
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > SMALL_ZEROED_BYTES {
            let allocated = unsafe { std::alloc::System.alloc_zeroed(layout) };
            advise_huge_pages(allocated, layout.size());
            return allocated;
        }
        let allocated = unsafe { std::alloc::System.alloc(layout) };
        if !allocated.is_null() {
            unsafe { std::ptr::write_bytes(allocated, 0, layout.size()) };
        }
        allocated
    }

    unsafe fn dealloc(&self, allocated: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(allocated, layout) }
    }

    unsafe fn realloc(&self, allocated: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let reallocated = unsafe { std::alloc::System.realloc(allocated, layout, new_size) };
        advise_huge_pages(reallocated, new_size);
        reallocated
    }
}

#[global_allocator]
static ALLOCATOR: SmallZeroedThroughMalloc = SmallZeroedThroughMalloc;

fn main() {
    humpback::cli::init_tracing();
    let cli = humpback::cli::Cli::parse();
    match humpback::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}
