//! `humpback bench search`: exact top-k latency over synthetic vector caches (random vectors
//! written directly as cache files, split into sets like one recording each), with the same
//! scans the server has. Per metric: the compact scan the server runs (int8 copy, then the f32
//! rows whose bounds reach the top k; its first query is cold when the files are not in the page
//! cache, which `scripts/bench-search` ensures) and the plain f32 scan, each the first query and
//! the median of the following ones, checked to give the same hits; peak memory (VmHWM, and how
//! much of it is anonymous rather than mapped file pages); the cache size on disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use clap::Args;

use crate::search::cache::{open_current, CacheWriter, SourceIdentity, VectorCache};
use crate::search::compact::{compact_top_k, CompactSlab};
use crate::search::scan::{top_k, Metric, VectorSlab};

#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Windows in the library.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 1280)]
    pub dims: u32,
    /// Windows per embedding set (one cache file each).
    #[arg(long, default_value_t = 10_000)]
    pub rows_per_set: usize,
    /// Queries per metric (the first is reported apart, the median is over the rest).
    #[arg(long, default_value_t = 7)]
    pub queries: usize,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Scan threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the cache files are (made there when missing; reused when present).
    #[arg(long)]
    pub dir: PathBuf,
    /// Only write the cache files, measure nothing.
    #[arg(long)]
    pub write_only: bool,
}

fn identity(dims: u32, rows: usize) -> SourceIdentity {
    SourceIdentity {
        vector_dim: dims,
        parquet_bytes: 0,
        parquet_modified_nanos: 0,
        recorded_rows: rows as u64,
        encoding_signature: "bench".into(),
    }
}

/// xorshift64*: fast, seeded, good enough for random vectors.
struct Random(u64);

impl Random {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn set_sizes(rows: usize, rows_per_set: usize) -> Vec<usize> {
    let per_set = rows_per_set.max(1);
    (0..rows.div_ceil(per_set)).map(|set| per_set.min(rows - set * per_set)).collect()
}

fn write_caches(args: &BenchSearchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let started = Instant::now();
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let dims = args.dims as usize;
    for (set, rows) in set_sizes(args.rows, args.rows_per_set).into_iter().enumerate() {
        let path = args.dir.join(format!("{}.f32", set + 1));
        if open_current(&path, &identity(args.dims, rows))?.is_ok() {
            continue;
        }
        let mut writer = CacheWriter::create(&path, identity(args.dims, rows))?;
        let mut written = 0;
        while written < rows {
            let batch = (rows - written).min(1024);
            let vectors: Vec<f32> = (0..batch * dims).map(|_| random.next_f32()).collect();
            let times: Vec<(f64, f64)> =
                (written..written + batch).map(|row| (row as f64 * 5.0, row as f64 * 5.0 + 5.0)).collect();
            writer.push_rows(&vectors, &times)?;
            written += batch;
        }
        writer.finish()?;
    }
    eprintln!("cache files ready in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    values[values.len() / 2]
}

fn open_caches(args: &BenchSearchArgs) -> anyhow::Result<(Vec<VectorCache>, u64)> {
    let mut caches = Vec::new();
    let mut bytes = 0;
    for (set, rows) in set_sizes(args.rows, args.rows_per_set).into_iter().enumerate() {
        let path: PathBuf = args.dir.join(format!("{}.f32", set + 1));
        let cache = open_current(&path, &identity(args.dims, rows))?
            .map_err(|reason| anyhow!("{}: {reason} (run with --write-only first)", path.display()))?;
        bytes += std::fs::metadata(Path::new(&path)).map(|m| m.len()).unwrap_or(0);
        caches.push(cache);
    }
    Ok((caches, bytes))
}

pub fn run(args: BenchSearchArgs) -> anyhow::Result<()> {
    write_caches(&args)?;
    if args.write_only {
        return Ok(());
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (caches, bytes) = open_caches(&args)?;
    let compact: Vec<CompactSlab<'_>> =
        caches.iter().enumerate().map(|(set, cache)| cache.compact_slab(set as u64 + 1)).collect();
    let slabs: Vec<VectorSlab<'_>> = compact.iter().map(|slab| slab.exact).collect();
    println!(
        "{} windows x {} dims in {} cache files, {:.2} GB on disk; exact top-{} on {threads} threads",
        args.rows,
        args.dims,
        caches.len(),
        bytes as f64 / 1e9,
        args.k
    );
    let mut random = Random(42);
    let gigabytes = |bytes_per_value: f64| args.rows as f64 * f64::from(args.dims) * bytes_per_value / 1e9;
    let metrics = [Metric::Cosine, Metric::Euclidean];
    let queries: Vec<Vec<Vec<f32>>> = metrics
        .iter()
        .map(|_| (0..args.queries.max(2)).map(|_| (0..args.dims).map(|_| random.next_f32()).collect()).collect())
        .collect();
    let report = |metric: Metric, name: &str, times: &mut Vec<f64>, gb: f64| {
        let first = times.remove(0);
        let median = median(times);
        println!(
            "{:<9} {:<7} first query {:>8.1} ms   median of next {} {:>8.1} ms   ({:.1} GB/s over {:.2} GB)",
            metric.as_str(),
            name,
            first * 1000.0,
            times.len(),
            median * 1000.0,
            gb / median,
            gb
        );
    };
    // The scan the server runs, alone first, so that the memory it touches is measured alone.
    let mut answers = Vec::new();
    for (metric, queries) in metrics.iter().zip(&queries) {
        let (mut times, mut rescored) = (Vec::new(), Vec::new());
        for query in queries {
            let started = Instant::now();
            let (hits, rescored_rows) = compact_top_k(query, &compact, args.k, *metric, threads)?;
            times.push(started.elapsed().as_secs_f64());
            rescored.push(rescored_rows as f64);
            anyhow::ensure!(hits.len() == args.k.min(args.rows), "the scan returned {} hits", hits.len());
            answers.push(hits);
        }
        report(*metric, "compact", &mut times, gigabytes(1.0));
        println!("{:<9} compact rescored a median of {:.0} rows from f32", metric.as_str(), median(&mut rescored));
    }
    println!(
        "after the compact scans: peak resident memory (VmHWM) {:.0} MB, of which anonymous (not mapped file pages) \
         {:.0} MB now",
        status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0,
        status_kib("RssAnon:").unwrap_or(0) as f64 / 1024.0
    );
    // The plain f32 scan over the same queries: its time, and the same hits.
    let mut answers = answers.into_iter();
    for (metric, queries) in metrics.iter().zip(&queries) {
        let mut times = Vec::new();
        for query in queries {
            let started = Instant::now();
            let exact = top_k(query, &slabs, args.k, *metric, threads)?;
            times.push(started.elapsed().as_secs_f64());
            anyhow::ensure!(Some(exact) == answers.next(), "the compact scan disagrees with the f32 scan");
        }
        report(*metric, "f32", &mut times, gigabytes(4.0));
    }
    println!("the compact scan gave exactly the f32 scan's hits for every query");
    println!(
        "after the f32 scans too: peak resident memory (VmHWM) {:.0} MB",
        status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}
