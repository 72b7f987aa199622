//! The vector cache: a derived, memory-mapped copy of one embedding set's vectors, for scanning.
//! The Parquet file stays the truth; a cache file that is missing, truncated, or made from
//! another version of its Parquet is rebuilt from it.
//!
//! `cache/vectors/{embedding_set_id}.f32`, little-endian:
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..8 | magic `HBVCACHE` |
//! | 8..12 | format version (u32, 2) |
//! | 12..16 | dimensions (u32) |
//! | 16..24 | rows (u64) |
//! | 24..32 | the source Parquet's size in bytes (u64) |
//! | 32..40 | the source Parquet's modification time, nanoseconds since the epoch (u64) |
//! | 40..48 | the embedding set's recorded row count (u64) |
//! | 48..112 | the embedding set's encoding signature (64 ASCII hex characters) |
//! | 112..128 | zero |
//! | 128.. | rows x dimensions f32 (row-major); rows f32 norms; rows f64 start seconds; rows f64 end seconds |
//! | then | the compact scan copy (see `compact.rs`): rows f32 scales; rows f32 bounds of the residuals; rows x dimensions i8 codes |
//!
//! Bytes 8..112 are the cache's identity: opening compares them with what the source is now
//! (one `stat` and a 128-byte read), and compares the file's length with what the header implies.
//! Files are written beside their final path (`{id}.tmp.f32`), fsynced and renamed into place.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::Mmap;

use super::compact::{quantize_row, CompactSlab};
use super::scan::VectorSlab;

use crate::artifacts::embeddings_parquet::read_batches;
use crate::artifacts::files::{promote, remove_if_exists, temp_sibling};
use crate::artifacts::ArtifactError;

pub const CACHE_MAGIC: &[u8; 8] = b"HBVCACHE";
pub const CACHE_FORMAT_VERSION: u32 = 2;
pub const HEADER_BYTES: usize = 128;
const SIGNATURE_BYTES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{doing} {path}: {source}")]
    Io { doing: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("embedding set {path} does not match what was recorded: {reason}")]
    SourceMismatch { path: PathBuf, reason: String },
    #[error("the vector cache needs a little-endian machine")]
    BigEndian,
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io { doing, path, source }
}

/// What a cache file was made from: if any part differs from the source now, it is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    pub vector_dim: u32,
    pub parquet_bytes: u64,
    pub parquet_modified_nanos: u64,
    pub recorded_rows: u64,
    pub encoding_signature: String,
}

impl SourceIdentity {
    /// The identity of a Parquet file as it is now, with what the log recorded about its set.
    pub fn of_parquet(
        parquet_path: &Path,
        vector_dim: u32,
        recorded_rows: u64,
        encoding_signature: &str,
    ) -> Result<SourceIdentity, CacheError> {
        let metadata = std::fs::metadata(parquet_path).map_err(io("reading the size of", parquet_path))?;
        let modified = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX));
        Ok(SourceIdentity {
            vector_dim,
            parquet_bytes: metadata.len(),
            parquet_modified_nanos: modified,
            recorded_rows,
            encoding_signature: encoding_signature.to_string(),
        })
    }

    fn header(&self, rows: u64) -> [u8; HEADER_BYTES] {
        let mut header = [0u8; HEADER_BYTES];
        header[0..8].copy_from_slice(CACHE_MAGIC);
        header[8..12].copy_from_slice(&CACHE_FORMAT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&self.vector_dim.to_le_bytes());
        header[16..24].copy_from_slice(&rows.to_le_bytes());
        header[24..32].copy_from_slice(&self.parquet_bytes.to_le_bytes());
        header[32..40].copy_from_slice(&self.parquet_modified_nanos.to_le_bytes());
        header[40..48].copy_from_slice(&self.recorded_rows.to_le_bytes());
        let signature = self.encoding_signature.as_bytes();
        let length = signature.len().min(SIGNATURE_BYTES);
        header[48..48 + length].copy_from_slice(&signature[..length]);
        header
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The length a cache file of this shape has.
pub fn expected_file_length(rows: u64, dim: u32) -> Option<u64> {
    // f32 vector, norm, two f64 times, scale, residual, and the i8 codes.
    let per_row = u64::from(dim).checked_mul(5)?.checked_add(4 + 8 + 8 + 8)?;
    rows.checked_mul(per_row)?.checked_add(HEADER_BYTES as u64)
}

/// Why a cache file cannot be used as it is (`None`: it can).
pub fn staleness(header: &[u8], file_length: u64, identity: &SourceIdentity) -> Option<String> {
    if header.len() < HEADER_BYTES || &header[0..8] != CACHE_MAGIC {
        return Some("not a vector cache file".into());
    }
    if u32_at(header, 8) != CACHE_FORMAT_VERSION {
        return Some(format!("format version {} (this build writes {CACHE_FORMAT_VERSION})", u32_at(header, 8)));
    }
    if header[..HEADER_BYTES] != identity.header(identity.recorded_rows)[..] {
        return Some("made from another version of the embedding set's Parquet file".into());
    }
    if expected_file_length(u64_at(header, 16), u32_at(header, 12)) != Some(file_length) {
        return Some(format!("{file_length} bytes long, not what its header implies (truncated?)"));
    }
    None
}

/// A mapped cache file.
pub struct VectorCache {
    map: Mmap,
    rows: usize,
    dim: usize,
}

impl std::fmt::Debug for VectorCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("VectorCache").field("rows", &self.rows).field("dim", &self.dim).finish()
    }
}

impl VectorCache {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn vectors_end(&self) -> usize {
        HEADER_BYTES + self.rows * self.dim * 4
    }

    /// Row-major vectors.
    pub fn vectors(&self) -> &[f32] {
        // The header is 128 bytes and a mapping starts on a page boundary, so this is aligned;
        // the length was checked against the header when the file was opened.
        bytemuck::cast_slice(&self.map[HEADER_BYTES..self.vectors_end()])
    }

    /// The Euclidean length of every row.
    pub fn norms(&self) -> &[f32] {
        bytemuck::cast_slice(&self.map[self.vectors_end()..self.vectors_end() + self.rows * 4])
    }

    fn f32_section(&self, index: usize) -> &[f32] {
        // Sections after the vectors: norms (0), then two f64 times (as 4 f32 widths), then
        // scales (5), residuals (6).
        let start = self.vectors_end() + index * self.rows * 4;
        bytemuck::cast_slice(&self.map[start..start + self.rows * 4])
    }

    pub fn scales(&self) -> &[f32] {
        self.f32_section(5)
    }

    pub fn residuals(&self) -> &[f32] {
        self.f32_section(6)
    }

    /// Row-major int8 codes.
    pub fn codes(&self) -> &[i8] {
        let start = self.vectors_end() + 7 * self.rows * 4;
        bytemuck::cast_slice(&self.map[start..start + self.rows * self.dim])
    }

    /// The f32 rows, as the scan takes them.
    pub fn slab(&self, embedding_set_id: u64) -> VectorSlab<'_> {
        VectorSlab { embedding_set_id, dim: self.dim, vectors: self.vectors(), norms: self.norms() }
    }

    /// The compact copy with its f32 rows, as the compact scan takes them.
    pub fn compact_slab(&self, embedding_set_id: u64) -> CompactSlab<'_> {
        CompactSlab {
            exact: self.slab(embedding_set_id),
            codes: self.codes(),
            scales: self.scales(),
            residuals: self.residuals(),
        }
    }

    /// The stored start and end (seconds) of a row.
    pub fn window_times(&self, row: usize) -> Option<(f64, f64)> {
        if row >= self.rows {
            return None;
        }
        let starts = self.vectors_end() + self.rows * 4;
        let ends = starts + self.rows * 8;
        let read = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.map[at..at + 8]);
            f64::from_le_bytes(word)
        };
        Some((read(starts + row * 8), read(ends + row * 8)))
    }
}

/// Opens a cache file if it is current for `identity`. `Ok(Err(reason))` when it is missing or stale.
pub fn open_current(path: &Path, identity: &SourceIdentity) -> Result<Result<VectorCache, String>, CacheError> {
    if !cfg!(target_endian = "little") {
        return Err(CacheError::BigEndian);
    }
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Err("no cache file yet".into())),
        Err(error) => return Err(io("opening", path)(error)),
    };
    let length = file.metadata().map_err(io("reading the size of", path))?.len();
    let mut header = [0u8; HEADER_BYTES];
    if length < HEADER_BYTES as u64 {
        return Ok(Err(format!("{length} bytes long, shorter than a header (truncated?)")));
    }
    file.read_exact(&mut header).map_err(io("reading", path))?;
    if let Some(reason) = staleness(&header, length, identity) {
        return Ok(Err(reason));
    }
    let rows = usize::try_from(u64_at(&header, 16)).map_err(|_| CacheError::SourceMismatch {
        path: path.to_path_buf(),
        reason: "too many rows for this machine".into(),
    })?;
    // SAFETY: cache files are never modified in place: they are written under a temporary name
    // and renamed over the old file, so a mapping keeps the inode it was made from. Only a
    // process truncating the file by hand while a search reads it could change the bytes.
    let map = unsafe { Mmap::map(&file) }.map_err(io("mapping", path))?;
    if map.len() as u64 != length {
        return Ok(Err("changed while it was being opened".into()));
    }
    Ok(Ok(VectorCache { map, rows, dim: identity.vector_dim as usize }))
}

/// Writes a cache file row by row: vectors and int8 codes as they come (each through its own
/// handle at its own offset of the file), norms, times, scales and bounds kept (28 bytes a row)
/// and written between them at the end; then fsync and rename into place.
pub struct CacheWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: BufWriter<File>,
    codes_writer: BufWriter<File>,
    identity: SourceIdentity,
    rows_written: u64,
    norms: Vec<f32>,
    starts: Vec<f64>,
    ends: Vec<f64>,
    scales: Vec<f32>,
    residuals: Vec<f32>,
}

impl CacheWriter {
    pub fn create(final_path: &Path, identity: SourceIdentity) -> Result<CacheWriter, CacheError> {
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let temp_path = temp_sibling(final_path);
        let rows = identity.recorded_rows;
        let (length, codes_offset) = expected_file_length(rows, identity.vector_dim)
            .zip(rows.checked_mul(u64::from(identity.vector_dim)))
            .ok_or_else(|| CacheError::SourceMismatch {
                path: final_path.to_path_buf(),
                reason: format!("{rows} rows of {} dimensions do not fit in a file", identity.vector_dim),
            })
            .map(|(length, codes)| (length, length - codes))?;
        let file = File::create(&temp_path).map_err(io("creating", &temp_path))?;
        let opened = (|| -> std::io::Result<(BufWriter<File>, BufWriter<File>)> {
            file.set_len(length)?;
            // A second open file (not a clone, which would share the first one's position).
            let mut codes_file = std::fs::OpenOptions::new().write(true).open(&temp_path)?;
            std::io::Seek::seek(&mut codes_file, std::io::SeekFrom::Start(codes_offset))?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            writer.write_all(&identity.header(rows))?;
            Ok((writer, BufWriter::with_capacity(1 << 20, codes_file)))
        })();
        let (writer, codes_writer) = match opened {
            Ok(writers) => writers,
            Err(error) => {
                let _ = remove_if_exists(&temp_path);
                return Err(io("preparing", &temp_path)(error));
            }
        };
        Ok(CacheWriter {
            final_path: final_path.to_path_buf(),
            temp_path,
            writer,
            codes_writer,
            identity,
            rows_written: 0,
            norms: Vec::new(),
            starts: Vec::new(),
            ends: Vec::new(),
            scales: Vec::new(),
            residuals: Vec::new(),
        })
    }

    /// Appends rows: `vectors` row-major, one `(start, end)` per row.
    pub fn push_rows(&mut self, vectors: &[f32], times: &[(f64, f64)]) -> Result<(), CacheError> {
        let dim = self.identity.vector_dim as usize;
        if dim == 0 || vectors.len() != times.len() * dim {
            return Err(CacheError::SourceMismatch {
                path: self.final_path.clone(),
                reason: format!("{} values for {} rows of {dim}", vectors.len(), times.len()),
            });
        }
        if !cfg!(target_endian = "little") {
            return Err(CacheError::BigEndian);
        }
        if self.rows_written + times.len() as u64 > self.identity.recorded_rows {
            return Err(CacheError::SourceMismatch {
                path: self.final_path.clone(),
                reason: format!("more than the {} rows recorded", self.identity.recorded_rows),
            });
        }
        self.writer.write_all(bytemuck::cast_slice(vectors)).map_err(io("writing", &self.temp_path))?;
        for row in vectors.chunks_exact(dim) {
            let (codes, scale, residual) = quantize_row(row);
            self.codes_writer.write_all(bytemuck::cast_slice(&codes)).map_err(io("writing", &self.temp_path))?;
            self.scales.push(scale);
            self.residuals.push(residual);
        }
        self.norms.extend(super::scan::row_norms(vectors, dim));
        self.starts.extend(times.iter().map(|time| time.0));
        self.ends.extend(times.iter().map(|time| time.1));
        self.rows_written += times.len() as u64;
        Ok(())
    }

    /// Checks the row count, writes norms and times, and promotes the file.
    pub fn finish(mut self) -> Result<(), CacheError> {
        if self.rows_written != self.identity.recorded_rows {
            let reason = format!("{} rows read, {} recorded", self.rows_written, self.identity.recorded_rows);
            let path = self.final_path.clone();
            self.abandon();
            return Err(CacheError::SourceMismatch { path, reason });
        }
        let written = (|| -> std::io::Result<()> {
            self.writer.write_all(bytemuck::cast_slice(&self.norms))?;
            self.writer.write_all(bytemuck::cast_slice(&self.starts))?;
            self.writer.write_all(bytemuck::cast_slice(&self.ends))?;
            self.writer.write_all(bytemuck::cast_slice(&self.scales))?;
            self.writer.write_all(bytemuck::cast_slice(&self.residuals))?;
            self.writer.flush()?;
            self.codes_writer.flush()
        })();
        if let Err(error) = written {
            let _ = remove_if_exists(&self.temp_path);
            return Err(io("writing", &self.temp_path)(error));
        }
        drop(self.writer);
        drop(self.codes_writer);
        promote(&self.temp_path, &self.final_path)?;
        Ok(())
    }

    pub fn abandon(self) {
        drop(self.writer);
        drop(self.codes_writer);
        let _ = remove_if_exists(&self.temp_path);
    }
}

/// One build at a time in this process (two searches of a new set must not share a temp file;
/// another process cannot hold the data directory at the same time).
static BUILDING: Mutex<()> = Mutex::new(());

/// Rebuilds the cache of one embedding set from its Parquet file.
pub fn build_from_parquet(parquet_path: &Path, cache_path: &Path, identity: &SourceIdentity) -> Result<(), CacheError> {
    let mut writer = CacheWriter::create(cache_path, identity.clone())?;
    let result = (|| -> Result<(), CacheError> {
        let mut position = 0u64;
        for batch in read_batches(parquet_path, 4096)? {
            let batch = batch?;
            if batch.vector_dim != identity.vector_dim as usize {
                return Err(CacheError::SourceMismatch {
                    path: parquet_path.to_path_buf(),
                    reason: format!("{} dimensions, {} recorded", batch.vector_dim, identity.vector_dim),
                });
            }
            for (offset, row_index) in batch.row_index.iter().enumerate() {
                if *row_index != position + offset as u64 {
                    return Err(CacheError::SourceMismatch {
                        path: parquet_path.to_path_buf(),
                        reason: format!("row {} holds row_index {row_index}", position + offset as u64),
                    });
                }
            }
            let times: Vec<(f64, f64)> =
                batch.start_seconds.iter().copied().zip(batch.end_seconds.iter().copied()).collect();
            writer.push_rows(&batch.vectors, &times)?;
            position += batch.row_index.len() as u64;
        }
        Ok(())
    })();
    match result {
        Ok(()) => writer.finish(),
        Err(error) => {
            writer.abandon();
            Err(error)
        }
    }
}

/// How a cache was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    Current,
    /// Built now, for this reason (missing, stale, truncated).
    Built(String),
}

/// The current cache of a set: opened if it is current, otherwise (re)built from the Parquet first.
pub fn open_or_build(
    parquet_path: &Path,
    cache_path: &Path,
    identity: &SourceIdentity,
) -> Result<(VectorCache, CacheStatus), CacheError> {
    if let Ok(cache) = open_current(cache_path, identity)? {
        return Ok((cache, CacheStatus::Current));
    }
    let _building = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Another search may have built it while this one waited.
    let reason = match open_current(cache_path, identity)? {
        Ok(cache) => return Ok((cache, CacheStatus::Current)),
        Err(reason) => reason,
    };
    tracing::info!(cache = %cache_path.display(), reason = %reason, "building the vector cache");
    build_from_parquet(parquet_path, cache_path, identity)?;
    match open_current(cache_path, identity)? {
        Ok(cache) => Ok((cache, CacheStatus::Built(reason))),
        Err(reason) => Err(CacheError::SourceMismatch {
            path: parquet_path.to_path_buf(),
            reason: format!("the cache just built is not usable: {reason}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::embeddings_parquet::{EmbeddingRow, EmbeddingSetWriter};

    fn write_set(path: &Path, rows: u64, dim: usize, scale: f32) {
        let mut writer = EmbeddingSetWriter::create(path, dim, Vec::new()).unwrap();
        let all: Vec<EmbeddingRow> = (0..rows)
            .map(|row| EmbeddingRow {
                row_index: row,
                start_seconds: row as f64 * 2.5,
                end_seconds: row as f64 * 2.5 + 5.0,
                padded: false,
                overlapped: false,
                embedding: (0..dim).map(|d| scale * (row as f32 + 1.0) * (d as f32 - 1.5)).collect(),
            })
            .collect();
        writer.write_rows(&all).unwrap();
        writer.finish_and_promote().unwrap();
    }

    #[test]
    fn a_cache_is_built_once_then_reused_and_rebuilt_when_stale_or_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("set.parquet");
        let cache_path = dir.path().join("cache").join("7.f32");
        write_set(&parquet, 5000, 4, 1.0);
        let identity = SourceIdentity::of_parquet(&parquet, 4, 5000, &"ab".repeat(32)).unwrap();
        let (cache, status) = open_or_build(&parquet, &cache_path, &identity).unwrap();
        assert!(matches!(status, CacheStatus::Built(_)));
        assert_eq!((cache.rows(), cache.dim()), (5000, 4));
        assert_eq!(&cache.vectors()[4 * 4999..], &[-7500.0, -2500.0, 2500.0, 7500.0]);
        assert_eq!(cache.window_times(4999), Some((4999.0 * 2.5, 4999.0 * 2.5 + 5.0)));
        assert_eq!(cache.window_times(5000), None);
        assert!((cache.norms()[0] - (2.25f32 * 2.0 + 0.25 * 2.0).sqrt()).abs() < 1e-6);
        assert!(!temp_sibling(&cache_path).exists());
        let compact = cache.compact_slab(7);
        let (codes, scale, residual) = crate::search::compact::quantize_row(&cache.vectors()[4 * 4999..]);
        assert_eq!(&compact.codes[4 * 4999..], &codes[..]);
        assert_eq!((compact.scales[4999], compact.residuals[4999]), (scale, residual));
        assert_eq!(compact.exact.norms.len(), 5000);
        drop(cache);
        let (_, status) = open_or_build(&parquet, &cache_path, &identity).unwrap();
        assert_eq!(status, CacheStatus::Current);

        // Truncated: detected by its length, rebuilt.
        let bytes = std::fs::read(&cache_path).unwrap();
        std::fs::write(&cache_path, &bytes[..bytes.len() - 8]).unwrap();
        let (_, status) = open_or_build(&parquet, &cache_path, &identity).unwrap();
        assert!(matches!(status, CacheStatus::Built(reason) if reason.contains("truncated")));

        // The Parquet replaced (another size and time): stale, rebuilt with the new vectors.
        write_set(&parquet, 5000, 4, -3.0);
        let identity = SourceIdentity::of_parquet(&parquet, 4, 5000, &"ab".repeat(32)).unwrap();
        let (cache, status) = open_or_build(&parquet, &cache_path, &identity).unwrap();
        assert!(matches!(status, CacheStatus::Built(reason) if reason.contains("another version")));
        assert_eq!(cache.vectors()[0], 4.5);
    }

    #[test]
    fn a_parquet_file_that_disagrees_with_the_log_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("set.parquet");
        let cache_path = dir.path().join("3.f32");
        write_set(&parquet, 10, 4, 1.0);
        let identity = SourceIdentity::of_parquet(&parquet, 4, 11, "x").unwrap();
        let error = open_or_build(&parquet, &cache_path, &identity).unwrap_err();
        assert!(error.to_string().contains("10 rows read, 11 recorded"), "{error}");
        assert!(!cache_path.exists() && !temp_sibling(&cache_path).exists());
        let identity = SourceIdentity::of_parquet(&parquet, 3, 10, "x").unwrap();
        assert!(open_or_build(&parquet, &cache_path, &identity).is_err());
    }
}
