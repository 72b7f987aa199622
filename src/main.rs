use clap::Parser;

/// The system allocator, with small zeroed allocations made by `malloc` and cleared here.
///
/// glibc's `calloc` bypasses the per-thread cache and takes its arena's lock on every call, and
/// bincode decodes every string through a zeroed buffer: opening the writer's snapshot (millions
/// of strings on two threads) spent an eighth of its time in `calloc` and its lock. Large zeroed
/// allocations still go to `calloc`, which can hand out fresh pages the kernel has zeroed.
struct SmallZeroedThroughMalloc;

const SMALL_ZEROED_BYTES: usize = 4096;

// SAFETY: every call forwards to `System` with the caller's layout; `alloc_zeroed` clears exactly
// the `layout.size()` bytes `System.alloc` returned for that layout.
unsafe impl std::alloc::GlobalAlloc for SmallZeroedThroughMalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > SMALL_ZEROED_BYTES {
            return unsafe { std::alloc::System.alloc_zeroed(layout) };
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
        unsafe { std::alloc::System.realloc(allocated, layout, new_size) }
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
