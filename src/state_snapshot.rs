//! Snapshots of the writer's `DomainState`, so start-up folds only the events after the last
//! snapshot instead of the whole log.
//!
//! A snapshot file is the magic `HUMPBACK-STAT3`, two chains of records, and the offset of
//! the second chain (u64, little-endian). A record holds at most [`RECORD_BYTES`]: its length
//! (u32, little-endian), its bytes, and the CRC-32 of every length and byte of its chain so
//! far (u32, little-endian; the second chain's checksum continues from the first chain's last);
//! a record of length 0 closes a chain. The first chain carries the bincode encoding of a
//! [`SnapshotHeader`] (format version, a fingerprint of the state's shape, the sequence it
//! covers, the SHA-256 of the covered event re-encoded as stored) and the first part of the
//! state; the second chain the rest (see `FirstPart` and `SecondPart`). It is written
//! stage-then-publish (temp file, fsync, rename, fsync the directory), streamed (only the
//! second part is held in memory while writing).
//!
//! A snapshot is only a shortcut: it is trusted only when every record's checksum holds, the
//! chains meet where the trailer says, its format and state shape are this build's, the
//! position it covers exists in the log, the event at that position is still the one it
//! covered, and both parts decode to their last byte. Anything else is ignored with a warning
//! and the writer folds the whole log, as without a snapshot.
//!
//! Reading checks each chain on its own thread and decodes the two parts on two others, so a
//! decoder only ever sees bytes whose checksum held (a flipped length can never make it
//! allocate gigabytes), the checksums cost little on two cores, and the decoding (about 30
//! million allocations for 1.4 million recordings) is split in two.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::artifacts::files::write_atomically_with;
use crate::domain::events::{EncodingConfig, ModelRegistered, RecordingTimeSource};
use crate::domain::ids::{
    AnnotationId, AudioFileId, ClassifierId, ClusteringJobId, DetectionJobId, EmbeddingSetId, EncodingSignature,
    EventSeq, ProcessingJobId, Sha256Hex,
};
use crate::domain::state::{
    AnnotationState, AudioFileState, ClassifierState, ClusteringJobState, DetectionJobState, DomainState,
    EmbeddingSetState, ProcessingJobState, SignatureState,
};
use crate::log::envelope::encode_record;
use crate::log::{Envelope, EventLog, LogError};
use crate::recording_time::UtcTime;

/// Bumped when the file layout changes (version 1 was one SHA-256 over the whole file, read
/// into memory before decoding; version 2 had a running SHA-256 after each record).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 3;

/// Events between two snapshots the writer takes while running.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// The first bytes of every snapshot file of this format.
const MAGIC: &[u8; 14] = b"HUMPBACK-STAT3";

/// The first bytes of a format-2 file (its records carried SHA-256s): named so that one left
/// by an older build is refused as an older format, not as a damaged file.
const FORMAT_2_MAGIC: &[u8; 14] = b"HUMPBACK-STATE";

/// The most body bytes one record holds.
pub const RECORD_BYTES: usize = 1 << 20;

/// Verified records in flight between the checking thread and the decoder.
const RECORDS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the snapshot {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the file does not start as a humpback state snapshot does")]
    NotASnapshot,
    #[error("the snapshot ends before its last record")]
    Truncated,
    #[error("the snapshot's checksum does not match its contents")]
    Checksum,
    #[error("the snapshot cannot be decoded: {0}")]
    Decode(String),
    #[error("the snapshot has format version {found}, this build writes {expected}")]
    FormatVersion { found: u32, expected: u32 },
    #[error("the snapshot was written by a build with another state layout")]
    StateShape,
    #[error("the snapshot covers event {covered}, beyond the log's head {head}")]
    BeyondHead { covered: EventSeq, head: EventSeq },
    #[error("event {covered} in the log is not the event the snapshot covered")]
    DifferentEvent { covered: EventSeq },
    #[error("the snapshot's state does not match the position it claims")]
    Inconsistent,
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
    #[error("cannot write the snapshot: {0}")]
    Write(String),
    #[error("cannot write the snapshot: {0}")]
    Artifact(#[from] crate::artifacts::ArtifactError),
    #[error(transparent)]
    Log(#[from] LogError),
}

#[derive(Debug, Clone, bincode::Encode, bincode::Decode)]
struct SnapshotHeader {
    format_version: u32,
    state_shape: [u8; 32],
    covered_seq: u64,
    covered_event_sha256: [u8; 32],
}

/// A fingerprint of the source of every type the state is made of, and of this file: a
/// snapshot written by a build whose state (or event payload) types or snapshot encoding differ
/// is never decoded with this build's (the first start after such an upgrade folds the log).
pub fn state_shape_fingerprint() -> [u8; 32] {
    let mut hasher = Sha256::new();
    for source in [
        include_str!("domain/state.rs"),
        include_str!("domain/events.rs"),
        include_str!("domain/ids.rs"),
        include_str!("domain/json_text.rs"),
        // `UtcTime` and `RecordingTimeSource` are kept in the state.
        include_str!("recording_time/mod.rs"),
        // How the parts are laid out (the jobs' shared configurations, the maps built in order).
        include_str!("state_snapshot.rs"),
    ] {
        hasher.update((source.len() as u64).to_le_bytes());
        hasher.update(source.as_bytes());
    }
    hasher.finalize().into()
}

/// The SHA-256 of an event as the log stores it (re-encoded from its envelope).
fn event_sha256(envelope: &Envelope) -> Result<[u8; 32], SnapshotError> {
    let bytes = encode_record(&envelope.event, envelope.recorded_at)
        .map_err(|error| SnapshotError::Encode(error.to_string()))?;
    Ok(Sha256::digest(&bytes).into())
}

/// The checksum closing each record: the CRC-32 of every length and body byte of its chain so
/// far, little-endian.
///
/// A CRC, as storage engines use per block, rather than the SHA-256 of format 2: the snapshot
/// guards against torn and damaged files, not against someone who can write the data directory
/// (who could write the log as well), and the CRC is checked at several GB/s against SHA-256's
/// one or two (a ninth of the opening's work went to SHA-256 on the 10-million-event bench).
type Checksum = [u8; CHECKSUM_BYTES];

const CHECKSUM_BYTES: usize = 4;

/// The running checksum of a chain, continuing from `seed` (the checksum the previous chain ended with).
fn running_checksum(seed: Option<Checksum>) -> crc32fast::Hasher {
    crc32fast::Hasher::new_with_initial(seed.map_or(0, u32::from_le_bytes))
}

/// Cuts what is written into checksummed records (see the module documentation).
struct RecordWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
    checksum: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> RecordWriter<W> {
    /// A chain whose running checksum continues from `seed`.
    fn new(inner: W, seed: Option<Checksum>) -> Self {
        RecordWriter { inner, pending: Vec::with_capacity(RECORD_BYTES), checksum: running_checksum(seed), written: 0 }
    }

    fn write_record(&mut self) -> std::io::Result<Checksum> {
        let length = (self.pending.len() as u32).to_le_bytes();
        self.checksum.update(&length);
        self.checksum.update(&self.pending);
        let so_far = self.checksum.clone().finalize().to_le_bytes();
        self.inner.write_all(&length)?;
        self.inner.write_all(&self.pending)?;
        self.inner.write_all(&so_far)?;
        self.written += (length.len() + self.pending.len() + so_far.len()) as u64;
        self.pending.clear();
        Ok(so_far)
    }

    /// Writes what is pending and the closing record: the writer back, the bytes the chain
    /// took and the checksum it ended with.
    fn finish(mut self) -> std::io::Result<(W, u64, Checksum)> {
        if !self.pending.is_empty() {
            self.write_record()?;
        }
        let last = self.write_record()?;
        Ok((self.inner, self.written, last))
    }
}

impl<W: Write> Write for RecordWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let taken = bytes.len().min(RECORD_BYTES - self.pending.len());
        self.pending.extend_from_slice(&bytes[..taken]);
        if self.pending.len() == RECORD_BYTES {
            self.write_record()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What checking a chain found: its closing checksum and the bytes it took, or `None` when
/// the decoder stopped listening before the end.
type ChainEnd = Option<(Checksum, u64)>;

/// Reads one chain of records from `source`, checking each, and sends their bytes to
/// `verified`; returns how the chain ended, or the first fault.
fn check_records(
    source: impl Read,
    seed: Option<Checksum>,
    verified: SyncSender<Vec<u8>>,
) -> Result<ChainEnd, SnapshotError> {
    let mut source = BufReader::with_capacity(1 << 16, source);
    let short = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
        _ => SnapshotError::Decode(error.to_string()),
    };
    let mut running = running_checksum(seed);
    let mut taken = 0u64;
    loop {
        let mut length = [0u8; 4];
        source.read_exact(&mut length).map_err(short)?;
        let record_length = u32::from_le_bytes(length) as usize;
        if record_length > RECORD_BYTES {
            return Err(SnapshotError::Checksum);
        }
        let mut record = vec![0u8; record_length];
        source.read_exact(&mut record).map_err(short)?;
        let mut checksum: Checksum = [0; CHECKSUM_BYTES];
        source.read_exact(&mut checksum).map_err(short)?;
        running.update(&length);
        running.update(&record);
        if running.clone().finalize().to_le_bytes() != checksum {
            return Err(SnapshotError::Checksum);
        }
        taken += (4 + record_length + CHECKSUM_BYTES) as u64;
        if record_length == 0 {
            return Ok(Some((checksum, taken)));
        }
        if verified.send(record).is_err() {
            return Ok(None);
        }
    }
}

/// The body bytes of checked records, in order; the end of the channel is the end of the body.
struct VerifiedBody {
    records: Receiver<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
}

impl VerifiedBody {
    /// Makes the current record hold unread bytes; `false` at the end of the body.
    fn refill(&mut self) -> bool {
        while self.position == self.current.len() {
            match self.records.recv() {
                Ok(record) => {
                    self.current = record;
                    self.position = 0;
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn at_end(&mut self) -> bool {
        !self.refill()
    }

    fn decode<T: bincode::Decode<()>>(&mut self) -> Result<T, SnapshotError> {
        bincode::decode_from_reader(&mut *self, bincode::config::standard())
            .map_err(|error| SnapshotError::Decode(error.to_string()))
    }

    /// Decodes `T` and checks that it was the whole body.
    fn decode_to_end<T: bincode::Decode<()>>(&mut self) -> Result<T, SnapshotError> {
        let decoded = self.decode()?;
        if !self.at_end() {
            return Err(SnapshotError::Decode("trailing bytes after the state".into()));
        }
        Ok(decoded)
    }
}

/// Bincode reads straight from the current record (varints and short fields without a copy
/// through `std::io::Read`).
impl bincode::de::read::Reader for VerifiedBody {
    fn read(&mut self, into: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let mut filled = 0;
        while filled < into.len() {
            if !self.refill() {
                return Err(bincode::error::DecodeError::UnexpectedEnd { additional: into.len() - filled });
            }
            let taken = (into.len() - filled).min(self.current.len() - self.position);
            into[filled..filled + taken].copy_from_slice(&self.current[self.position..self.position + taken]);
            self.position += taken;
            filled += taken;
        }
        Ok(())
    }

    fn peek_read(&mut self, wanted: usize) -> Option<&[u8]> {
        self.current.get(self.position..self.position + wanted)
    }

    fn consume(&mut self, read: usize) {
        self.position += read;
    }
}

/// Where snapshot bytes come from: a file, or bytes in memory (tests).
pub trait SnapshotSource: Sync {
    fn length(&self) -> std::io::Result<u64>;
    /// The bytes from `offset` to the end.
    fn read_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>>;
}

impl SnapshotSource for Path {
    fn length(&self) -> std::io::Result<u64> {
        std::fs::metadata(self).map(|metadata| metadata.len())
    }

    fn read_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        use std::io::Seek;
        let mut file = std::fs::File::open(self)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }
}

impl SnapshotSource for [u8] {
    fn length(&self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.get(offset as usize..).unwrap_or_default()))
    }
}

fn read_exact_at(source: &(impl SnapshotSource + ?Sized), offset: u64, into: &mut [u8]) -> Result<(), SnapshotError> {
    source.read_from(offset).and_then(|mut reader| reader.read_exact(into)).map_err(|error| match error.kind() {
        std::io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
        _ => SnapshotError::Decode(error.to_string()),
    })
}

/// The state cut in two, one part per chain, so two threads decode it, each about half the
/// work (on the 10-million-event bench): the header's part (recordings, sets and the rest) and
/// the processing jobs with the two maps keyed by hashes (recordings by checksum, signatures).
type FirstPart = (
    EventSeq,
    BTreeMap<String, ModelRegistered>,
    BTreeSet<String>,
    BuiltInOrder<BTreeMap<AudioFileId, AudioFileState>>,
    BuiltInOrder<BTreeMap<EmbeddingSetId, EmbeddingSetState>>,
    BTreeMap<ClusteringJobId, ClusteringJobState>,
    u64,
    BuiltInOrder<BTreeMap<AnnotationId, AnnotationState>>,
    u64,
    HashMap<AudioFileId, (UtcTime, RecordingTimeSource)>,
    BTreeMap<ClassifierId, ClassifierState>,
    BTreeMap<DetectionJobId, DetectionJobState>,
);
type SecondPart = (
    JobsSharingConfigs<BTreeMap<ProcessingJobId, ProcessingJobState>>,
    HashMap<Sha256Hex, AudioFileId>,
    HashMap<EncodingSignature, SignatureState>,
);

/// A map the snapshot stores as bincode stores any map (its length, then its entries in key
/// order) and reads back in one pass from the entries in order, rather than by an insert per
/// entry (a million recordings, a million sets).
struct BuiltInOrder<Map>(Map);

impl<K: bincode::Encode + Ord, V: bincode::Encode> bincode::Encode for BuiltInOrder<&BTreeMap<K, V>> {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        self.0.encode(encoder)
    }
}

impl<Context, K: bincode::Decode<Context> + Ord, V: bincode::Decode<Context>> bincode::Decode<Context>
    for BuiltInOrder<BTreeMap<K, V>>
{
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let count = u64::decode(decoder)?;
        let mut entries = Vec::new();
        for _ in 0..count {
            entries.push((K::decode(decoder)?, V::decode(decoder)?));
        }
        Ok(BuiltInOrder(entries.into_iter().collect()))
    }
}

/// The processing jobs as the snapshot stores them: a job's encoding configuration is written
/// whole the first time it appears and as its number after that, and read back shared, as the
/// state holds it (a million jobs of a few models carry a few configurations). The jobs come
/// back in key order, so the map is built in one pass rather than by a million inserts.
struct JobsSharingConfigs<Jobs>(Jobs);

impl bincode::Encode for JobsSharingConfigs<&BTreeMap<ProcessingJobId, ProcessingJobState>> {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        let mut numbers: HashMap<*const EncodingConfig, u64> = HashMap::new();
        for (job_id, job) in self.0 {
            let ProcessingJobState {
                audio_file_id,
                encoding_signature,
                config,
                status,
                attempt,
                cancel_requested,
                embedding_set_id,
                queued_at,
            } = job;
            job_id.encode(encoder)?;
            audio_file_id.encode(encoder)?;
            encoding_signature.encode(encoder)?;
            let next = numbers.len() as u64;
            let number = *numbers.entry(Arc::as_ptr(config)).or_insert(next);
            number.encode(encoder)?;
            if number == next {
                config.encode(encoder)?;
            }
            status.encode(encoder)?;
            attempt.encode(encoder)?;
            cancel_requested.encode(encoder)?;
            embedding_set_id.encode(encoder)?;
            queued_at.encode(encoder)?;
        }
        Ok(())
    }
}

impl<Context> bincode::Decode<Context> for JobsSharingConfigs<BTreeMap<ProcessingJobId, ProcessingJobState>> {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        use bincode::Decode;
        let count = u64::decode(decoder)?;
        let mut configs: Vec<Arc<EncodingConfig>> = Vec::new();
        let mut jobs = Vec::new();
        for _ in 0..count {
            let job_id = ProcessingJobId::decode(decoder)?;
            let audio_file_id = Decode::decode(decoder)?;
            let encoding_signature = Decode::decode(decoder)?;
            let number = u64::decode(decoder)?;
            let config = if number == configs.len() as u64 {
                let config = Arc::new(EncodingConfig::decode(decoder)?);
                configs.push(config.clone());
                config
            } else {
                let known = usize::try_from(number).ok().and_then(|number| configs.get(number));
                known
                    .cloned()
                    .ok_or(bincode::error::DecodeError::Other("an encoding configuration number out of range"))?
            };
            jobs.push((
                job_id,
                ProcessingJobState {
                    audio_file_id,
                    encoding_signature,
                    config,
                    status: Decode::decode(decoder)?,
                    attempt: Decode::decode(decoder)?,
                    cancel_requested: Decode::decode(decoder)?,
                    embedding_set_id: Decode::decode(decoder)?,
                    queued_at: Decode::decode(decoder)?,
                },
            ));
        }
        Ok(JobsSharingConfigs(jobs.into_iter().collect()))
    }
}

fn encode_parts(state: &DomainState, first: &mut impl Write, second: &mut impl Write) -> Result<(), SnapshotError> {
    let DomainState {
        last_seq,
        models,
        retired_models,
        audio_files,
        audio_file_by_checksum,
        processing_jobs,
        signatures,
        embedding_sets,
        clustering_jobs,
        last_cluster_id,
        annotations,
        last_annotation_id,
        recording_start_times,
        classifiers,
        detection_jobs,
    } = state;
    let config = bincode::config::standard();
    let failed = |error: bincode::error::EncodeError| SnapshotError::Encode(error.to_string());
    let first_part = (
        last_seq,
        models,
        retired_models,
        BuiltInOrder(audio_files),
        BuiltInOrder(embedding_sets),
        clustering_jobs,
        last_cluster_id,
        BuiltInOrder(annotations),
        last_annotation_id,
        recording_start_times,
        classifiers,
        detection_jobs,
    );
    bincode::encode_into_std_write(first_part, first, config).map_err(failed)?;
    let second_part = (JobsSharingConfigs(processing_jobs), audio_file_by_checksum, signatures);
    bincode::encode_into_std_write(second_part, second, config).map_err(failed)?;
    Ok(())
}

fn join_parts(first: FirstPart, second: SecondPart) -> DomainState {
    let (
        last_seq,
        models,
        retired_models,
        BuiltInOrder(audio_files),
        BuiltInOrder(embedding_sets),
        clustering_jobs,
        last_cluster_id,
        BuiltInOrder(annotations),
        last_annotation_id,
        recording_start_times,
        classifiers,
        detection_jobs,
    ) = first;
    let (JobsSharingConfigs(processing_jobs), audio_file_by_checksum, signatures) = second;
    DomainState {
        last_seq,
        models,
        retired_models,
        audio_files,
        audio_file_by_checksum,
        processing_jobs,
        signatures,
        embedding_sets,
        clustering_jobs,
        last_cluster_id,
        annotations,
        last_annotation_id,
        recording_start_times,
        classifiers,
        detection_jobs,
    }
}

fn header_for(state: &DomainState, log: &dyn EventLog) -> Result<SnapshotHeader, SnapshotError> {
    let covered_event_sha256 = match log.get(state.last_seq)? {
        Some(envelope) => event_sha256(&envelope)?,
        None if state.last_seq == EventSeq(0) => [0; 32],
        None => return Err(SnapshotError::BeyondHead { covered: state.last_seq, head: log.head() }),
    };
    Ok(SnapshotHeader {
        format_version: SNAPSHOT_FORMAT_VERSION,
        state_shape: state_shape_fingerprint(),
        covered_seq: state.last_seq.0,
        covered_event_sha256,
    })
}

/// The file: magic, the first chain (header and first part), the second chain (second part,
/// its checksums seeded with the first chain's last), and the offset of the second chain.
fn write_parts<W: Write>(mut into: W, header: &SnapshotHeader, state: &DomainState) -> Result<W, SnapshotError> {
    let config = bincode::config::standard();
    let failed = |error: std::io::Error| SnapshotError::Write(error.to_string());
    into.write_all(MAGIC).map_err(failed)?;
    let mut first = RecordWriter::new(into, None);
    bincode::encode_into_std_write(header, &mut first, config)
        .map_err(|error| SnapshotError::Encode(error.to_string()))?;
    // The second part is encoded into memory first (the chains follow each other in the file).
    let mut second_bytes = Vec::new();
    encode_parts(state, &mut first, &mut second_bytes)?;
    let (into, first_length, first_last) = first.finish().map_err(failed)?;
    let mut second = RecordWriter::new(into, Some(first_last));
    second.write_all(&second_bytes).map_err(failed)?;
    drop(second_bytes);
    let (mut into, _, _) = second.finish().map_err(failed)?;
    let second_offset = MAGIC.len() as u64 + first_length;
    into.write_all(&second_offset.to_le_bytes()).map_err(failed)?;
    into.flush().map_err(failed)?;
    Ok(into)
}

/// Streams the snapshot of `state` (which must be folded from `log` up to `state.last_seq`)
/// into `into`.
pub fn encode_snapshot_into<W: Write>(into: W, state: &DomainState, log: &dyn EventLog) -> Result<W, SnapshotError> {
    write_parts(into, &header_for(state, log)?, state)
}

/// Writes a snapshot of `state` to `path` (stage, fsync, rename, fsync the directory).
pub fn write_snapshot(path: &Path, state: &DomainState, log: &dyn EventLog) -> Result<(), SnapshotError> {
    let header = header_for(state, log)?;
    write_atomically_with(path, |file| write_parts(file, &header, state).map(drop))
}

fn decode_header(body: &mut VerifiedBody) -> Result<SnapshotHeader, SnapshotError> {
    let header: SnapshotHeader = body.decode()?;
    if header.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::FormatVersion { found: header.format_version, expected: SNAPSHOT_FORMAT_VERSION });
    }
    if header.state_shape != state_shape_fingerprint() {
        return Err(SnapshotError::StateShape);
    }
    Ok(header)
}

/// A chain being checked on its own thread, its bytes decoded on another.
fn spawn_checker<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    source: &'scope (impl SnapshotSource + ?Sized),
    offset: u64,
    seed: Option<Checksum>,
) -> (std::thread::ScopedJoinHandle<'scope, Result<ChainEnd, SnapshotError>>, VerifiedBody) {
    let (sender, receiver) = sync_channel(RECORDS_IN_FLIGHT);
    let checker = scope.spawn(move || {
        let reader = source.read_from(offset).map_err(|error| SnapshotError::Decode(error.to_string()))?;
        check_records(reader, seed, sender)
    });
    (checker, VerifiedBody { records: receiver, current: Vec::new(), position: 0 })
}

fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, SnapshotError>>) -> Result<T, SnapshotError> {
    handle.join().unwrap_or_else(|_| Err(SnapshotError::Decode("a snapshot thread panicked".into())))
}

/// Checks the magic; the file's length, the offset of the second chain and the checksum that
/// seeds it.
fn read_frame(source: &(impl SnapshotSource + ?Sized)) -> Result<(u64, u64, Checksum), SnapshotError> {
    let length = source.length().map_err(|error| SnapshotError::Decode(error.to_string()))?;
    let mut magic = [0u8; MAGIC.len()];
    read_exact_at(source, 0, &mut magic)?;
    if &magic == FORMAT_2_MAGIC {
        return Err(SnapshotError::FormatVersion { found: 2, expected: SNAPSHOT_FORMAT_VERSION });
    }
    if &magic != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    // Two closing records (a length and a checksum each) and the trailer.
    let closing_record = (4 + CHECKSUM_BYTES) as u64;
    let smallest = MAGIC.len() as u64 + 2 * closing_record + 8;
    if length < smallest {
        return Err(SnapshotError::Truncated);
    }
    let mut offset = [0u8; 8];
    read_exact_at(source, length - 8, &mut offset)?;
    let second_offset = u64::from_le_bytes(offset);
    if second_offset < MAGIC.len() as u64 + closing_record || second_offset > length - 8 - closing_record {
        return Err(SnapshotError::Checksum);
    }
    let mut seed: Checksum = [0; CHECKSUM_BYTES];
    read_exact_at(source, second_offset - CHECKSUM_BYTES as u64, &mut seed)?;
    Ok((length, second_offset, seed))
}

/// A snapshot whose records are checked and decoded, not yet held against the log: it can be
/// read while the log is still opening (start-up does both at once), then
/// [`UnverifiedSnapshot::verify`] decides whether it is trusted.
pub struct UnverifiedSnapshot {
    covered: EventSeq,
    covered_event_sha256: [u8; 32],
    state: DomainState,
}

impl UnverifiedSnapshot {
    /// The state, if the snapshot covers an event of this log: its position is at or before
    /// the head and the event there hashes to what the snapshot recorded.
    pub fn verify(self, log: &dyn EventLog) -> Result<DomainState, SnapshotError> {
        let UnverifiedSnapshot { covered, covered_event_sha256, state } = self;
        let head = log.head();
        if covered > head {
            return Err(SnapshotError::BeyondHead { covered, head });
        }
        if covered != EventSeq(0) {
            let envelope = log.get(covered)?.ok_or(SnapshotError::DifferentEvent { covered })?;
            if event_sha256(&envelope)? != covered_event_sha256 {
                return Err(SnapshotError::DifferentEvent { covered });
            }
        }
        Ok(state)
    }
}

/// Decodes and verifies the snapshot in `source` against `log` (see the module
/// documentation).
pub fn decode_snapshot(
    source: &(impl SnapshotSource + ?Sized),
    log: &dyn EventLog,
) -> Result<DomainState, SnapshotError> {
    decode_snapshot_unverified(source)?.verify(log)
}

/// Decodes the snapshot in `source` and checks its records, on four threads: the two chains
/// are checked and decoded at once.
pub fn decode_snapshot_unverified(
    source: &(impl SnapshotSource + ?Sized),
) -> Result<UnverifiedSnapshot, SnapshotError> {
    let (length, second_offset, seed) = read_frame(source)?;
    std::thread::scope(|scope| {
        let (first_checker, mut first_body) = spawn_checker(scope, source, MAGIC.len() as u64, None);
        let (second_checker, mut second_body) = spawn_checker(scope, source, second_offset, Some(seed));
        let second_decoder = scope.spawn(move || second_body.decode_to_end::<SecondPart>());
        let first = (|| {
            let header = decode_header(&mut first_body)?;
            let first: FirstPart = first_body.decode_to_end()?;
            if first.0 != EventSeq(header.covered_seq) {
                return Err(SnapshotError::Inconsistent);
            }
            Ok((header, first))
        })();
        // Let the checkers finish: each stops at its next record once its decoder is gone.
        drop(first_body);
        let second = joined(second_decoder);
        let first_checked = joined(first_checker);
        let second_checked = joined(second_checker);
        // A fault in the records wins over whatever the decoders made of the bytes before it,
        // then the decoders' own faults; a checker that stopped early stopped for those.
        let (first_checked, second_checked) = (first_checked?, second_checked?);
        let ((header, first), second) = (first?, second?);
        let (Some((first_last, first_length)), Some((_, second_length))) = (first_checked, second_checked) else {
            return Err(SnapshotError::Checksum);
        };
        if first_last != seed
            || MAGIC.len() as u64 + first_length != second_offset
            || second_offset + second_length + 8 != length
        {
            return Err(SnapshotError::Checksum);
        }
        Ok(UnverifiedSnapshot {
            covered: EventSeq(header.covered_seq),
            covered_event_sha256: header.covered_event_sha256,
            state: join_parts(first, second),
        })
    })
}

/// The position a snapshot (a `Path`, or bytes) says it covers, from its header alone
/// (`None` when there is none or its header cannot be read): for tools deciding whether to
/// write one.
pub fn read_snapshot_position(source: &(impl SnapshotSource + ?Sized)) -> Option<EventSeq> {
    read_frame(source).ok()?;
    std::thread::scope(|scope| {
        let (checker, mut body) = spawn_checker(scope, source, MAGIC.len() as u64, None);
        let header = decode_header(&mut body);
        drop(body);
        let _ = joined(checker);
        header.ok().map(|header| EventSeq(header.covered_seq))
    })
}

/// Reads and verifies the snapshot at `path`: `Ok(None)` when there is none.
pub fn read_snapshot(path: &Path, log: &dyn EventLog) -> Result<Option<DomainState>, SnapshotError> {
    read_snapshot_unverified(path)?.map(|snapshot| snapshot.verify(log)).transpose()
}

/// Reads the snapshot at `path` and checks its records, without the log: `Ok(None)` when
/// there is none.
pub fn read_snapshot_unverified(path: &Path) -> Result<Option<UnverifiedSnapshot>, SnapshotError> {
    match std::fs::metadata(path) {
        Ok(_) => decode_snapshot_unverified(path).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Read { path: path.to_path_buf(), source }),
    }
}

/// A snapshot read (or not) before the log was at hand, with where it came from and how long
/// reading it took: what [`fold_from_read_snapshot`] starts from.
pub struct ReadSnapshot {
    pub path: PathBuf,
    pub outcome: Result<Option<UnverifiedSnapshot>, SnapshotError>,
    pub seconds: f64,
}

impl ReadSnapshot {
    /// Reads the snapshot at `path` (on this thread; start-up runs it beside opening the log).
    pub fn read(path: PathBuf) -> ReadSnapshot {
        let started = std::time::Instant::now();
        let outcome = read_snapshot_unverified(&path);
        ReadSnapshot { path, outcome, seconds: started.elapsed().as_secs_f64() }
    }
}

/// The state at the log's head, and the position of the snapshot it started from: the
/// snapshot at `path` if it can be trusted (a warning says why when it cannot), then every
/// event after it.
pub fn fold_from_snapshot(path: Option<&Path>, log: &dyn EventLog) -> Result<(DomainState, EventSeq), LogError> {
    fold_from_read_snapshot(path.map(|path| ReadSnapshot::read(path.to_path_buf())), log)
}

/// [`fold_from_snapshot`] from a snapshot already read: verified against `log` here.
pub fn fold_from_read_snapshot(
    snapshot: Option<ReadSnapshot>,
    log: &dyn EventLog,
) -> Result<(DomainState, EventSeq), LogError> {
    let verified = snapshot.map(|ReadSnapshot { path, outcome, seconds }| {
        let verified = outcome.and_then(|snapshot| snapshot.map(|snapshot| snapshot.verify(log)).transpose());
        (path, verified, seconds)
    });
    let mut state = match verified {
        Some((path, Ok(Some(state)), seconds)) => {
            tracing::info!(path = %path.display(), covered = state.last_seq.0, seconds, "state read from the snapshot");
            state
        }
        Some((path, Err(error), _)) => {
            tracing::warn!(path = %path.display(), %error, "snapshot ignored, folding the whole log");
            DomainState::default()
        }
        _ => DomainState::default(),
    };
    let covered = state.last_seq;
    for envelope in log.scan(covered.next()..=EventSeq(u64::MAX), false) {
        let envelope = envelope?;
        state.apply(envelope.seq, &envelope.event);
    }
    Ok((state, covered))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::events::Event;
    use crate::domain::sample_events::{one_event_of_every_type, realistic_event_stream};
    use crate::log::SledEventLog;
    use crate::writer::{SnapshotSettings, Writer};

    /// A pool of events covering every type, some touching the same aggregates.
    fn event_pool() -> Vec<Event> {
        let mut pool = one_event_of_every_type();
        pool.extend(realistic_event_stream(40));
        pool
    }

    fn full_fold(log: &dyn EventLog) -> DomainState {
        fold_from_snapshot(None, log).unwrap().0
    }

    fn log_with(dir: &Path, events: &[Event]) -> SledEventLog {
        let log = SledEventLog::open(&dir.join("events")).unwrap();
        if !events.is_empty() {
            log.append(events).unwrap();
        }
        log
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Opening from a snapshot taken at any position, plus the events after it, gives
        /// exactly the state of folding the whole log.
        #[test]
        fn a_snapshot_plus_the_rest_of_the_log_equals_the_full_fold(
            picks in proptest::collection::vec(0usize..100, 0..60),
            cut in 0usize..60,
        ) {
            let pool = event_pool();
            let events: Vec<Event> = picks.iter().map(|pick| pool[pick % pool.len()].clone()).collect();
            let cut = cut.min(events.len());
            let dir = tempfile::tempdir().unwrap();
            let log = log_with(dir.path(), &events[..cut]);
            let path = dir.path().join("snapshots").join("state.bin");
            write_snapshot(&path, &full_fold(&log), &log).unwrap();
            if cut < events.len() {
                log.append(&events[cut..]).unwrap();
            }
            let (state, covered) = fold_from_snapshot(Some(&path), &log).unwrap();
            prop_assert_eq!(covered, EventSeq(cut as u64));
            prop_assert_eq!(&state, &full_fold(&log));
        }
    }

    #[test]
    fn a_corrupt_snapshot_is_ignored_and_the_whole_log_folded() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), &event_pool());
        let path = dir.path().join("state.bin");
        write_snapshot(&path, &full_fold(&log), &log).unwrap();
        let good = std::fs::read(&path).unwrap();
        let last = good.len() - 1;
        for position in [0, MAGIC.len(), MAGIC.len() + 4, good.len() / 3, good.len() / 2, last - 8, last - 20, last] {
            let mut bad = good.clone();
            bad[position] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let error = read_snapshot(&path, &log).unwrap_err();
            match position {
                0 => assert!(matches!(error, SnapshotError::NotASnapshot), "{error}"),
                _ => assert!(
                    matches!(error, SnapshotError::Checksum | SnapshotError::Truncated),
                    "byte {position}: {error}"
                ),
            }
            let (state, covered) = fold_from_snapshot(Some(&path), &log).unwrap();
            assert_eq!(covered, EventSeq(0));
            assert_eq!(state, full_fold(&log));
        }
        for length in [20, good.len() - 14, good.len() - 8, good.len() - 1] {
            std::fs::write(&path, &good[..length]).unwrap();
            let error = read_snapshot(&path, &log).unwrap_err();
            assert!(matches!(error, SnapshotError::Truncated | SnapshotError::Checksum), "cut at {length}: {error}");
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(read_snapshot(&path, &log).is_err());
    }

    /// A state bigger than one record: cut into several, read back whole, and a flipped byte
    /// in any record is caught before the decoder sees it.
    #[test]
    fn a_snapshot_of_several_records_round_trips_and_every_record_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Event> = realistic_event_stream(30_000).collect();
        let log = log_with(dir.path(), &events);
        let state = full_fold(&log);
        let good = encode_snapshot_into(Vec::new(), &state, &log).unwrap();
        let records = good.len() / (RECORD_BYTES + 4 + CHECKSUM_BYTES);
        assert!(records >= 2, "the sample state should fill several records ({} bytes)", good.len());
        assert_eq!(decode_snapshot(good.as_slice(), &log).unwrap(), state);
        assert_eq!(read_snapshot_position(good.as_slice()), Some(state.last_seq));
        let (_, second_offset, _) = read_frame(good.as_slice()).unwrap();
        let positions = (0..records)
            .map(|record| MAGIC.len() + record * (RECORD_BYTES + 4 + CHECKSUM_BYTES) + 4 + 1000)
            .chain([second_offset as usize - 2, second_offset as usize + 4 + 1000]);
        for (record, position) in positions.enumerate() {
            let mut bad = good.clone();
            bad[position] ^= 0x01;
            assert!(matches!(decode_snapshot(bad.as_slice(), &log), Err(SnapshotError::Checksum)), "record {record}");
        }
    }

    /// Jobs queued with one configuration share it in the folded state, in the snapshot's
    /// bytes (written once) and in the state read back.
    #[test]
    fn jobs_share_their_encoding_configuration_through_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Event> = realistic_event_stream(700).collect();
        let log = log_with(dir.path(), &events);
        let state = full_fold(&log);
        let shared = |state: &DomainState| {
            let configs: Vec<&Arc<EncodingConfig>> = state.processing_jobs.values().map(|job| &job.config).collect();
            assert_eq!(configs.len(), 100);
            configs.windows(2).all(|pair| Arc::ptr_eq(pair[0], pair[1]))
        };
        assert!(shared(&state), "the fold shares one configuration");
        let bytes = encode_snapshot_into(Vec::new(), &state, &log).unwrap();
        let feature_config = state.processing_jobs.values().next().unwrap().config.feature_config.as_str().to_string();
        let written = bytes.windows(feature_config.len()).filter(|window| *window == feature_config.as_bytes()).count();
        assert_eq!(written, 1, "the configuration is written once");
        let read = decode_snapshot(bytes.as_slice(), &log).unwrap();
        assert_eq!(read, state);
        assert!(shared(&read), "the snapshot read back shares one configuration");
    }

    #[test]
    fn a_snapshot_of_another_history_is_not_trusted() {
        let pool = event_pool();
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(&dir.path().join("one"), &pool[..30]);
        let other = log_with(&dir.path().join("two"), &pool[10..40]);
        let path = dir.path().join("state.bin");
        write_snapshot(&path, &full_fold(&other), &other).unwrap();
        assert!(matches!(read_snapshot(&path, &log), Err(SnapshotError::DifferentEvent { .. })));
        assert_eq!(fold_from_snapshot(Some(&path), &log).unwrap(), (full_fold(&log), EventSeq(0)));
        // Taken further than the log goes (a log restored from an older backup, say).
        let longer = log_with(&dir.path().join("three"), &pool[..35]);
        write_snapshot(&path, &full_fold(&longer), &longer).unwrap();
        assert!(matches!(read_snapshot(&path, &log), Err(SnapshotError::BeyondHead { .. })));
        assert_eq!(fold_from_snapshot(Some(&path), &log).unwrap(), (full_fold(&log), EventSeq(0)));
    }

    #[test]
    fn a_snapshot_of_another_format_version_or_state_layout_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), &event_pool());
        let state = full_fold(&log);
        let seal = |header: &SnapshotHeader| write_parts(Vec::new(), header, &state).unwrap();
        let good = header_for(&state, &log).unwrap();
        assert_eq!(decode_snapshot(seal(&good).as_slice(), &log).unwrap(), state);
        let future = SnapshotHeader { format_version: SNAPSHOT_FORMAT_VERSION + 1, ..good.clone() };
        assert!(matches!(decode_snapshot(seal(&future).as_slice(), &log), Err(SnapshotError::FormatVersion { .. })));
        let other_build = SnapshotHeader { state_shape: [7; 32], ..good.clone() };
        assert!(matches!(decode_snapshot(seal(&other_build).as_slice(), &log), Err(SnapshotError::StateShape)));
        let lying = SnapshotHeader { covered_seq: 3, ..good.clone() };
        assert!(decode_snapshot(seal(&lying).as_slice(), &log).is_err());
        // A version 1 snapshot (one checksum over the whole file, no magic) is not this format.
        let version_one = [1u8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7];
        assert!(matches!(decode_snapshot(version_one.as_slice(), &log), Err(SnapshotError::NotASnapshot)));
        // A version 2 snapshot is named as such (an upgrade, not damage).
        let mut version_two = FORMAT_2_MAGIC.to_vec();
        version_two.extend_from_slice(&seal(&good)[MAGIC.len()..]);
        assert!(matches!(
            decode_snapshot(version_two.as_slice(), &log),
            Err(SnapshotError::FormatVersion { found: 2, expected: 3 })
        ));
    }

    #[test]
    fn the_writer_snapshots_every_n_events_and_at_shutdown_and_starts_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(log_with(dir.path(), &event_pool()[..20]));
        let settings = SnapshotSettings { path: dir.path().join("state.bin"), every: 5 };
        let writer = Writer::open_with_snapshots(log.clone(), settings.clone()).unwrap();
        assert!(!settings.path.exists(), "nothing written before the first command");
        writer.write_snapshot();
        assert_eq!(read_snapshot(&settings.path, log.as_ref()).unwrap().unwrap().last_seq, EventSeq(20));
        log.append(&event_pool()[20..30]).unwrap();
        drop(writer);
        let reopened = Writer::open_with_snapshots(log.clone(), settings.clone()).unwrap();
        assert_eq!(reopened.read_state(|state| state.clone()), full_fold(log.as_ref()));
        assert_eq!(reopened.read_state(|state| state.last_seq), EventSeq(30));
        let command = crate::domain::decide::Command::RegisterModel(match &one_event_of_every_type()[0] {
            Event::ModelRegistered(model) => {
                crate::domain::events::ModelRegistered { name: "another".into(), ..model.clone() }
            }
            _ => unreachable!("the first sample event registers a model"),
        });
        reopened.execute(command).unwrap();
        // 31 events, the last snapshot at 20: due (every 5), so written after the command.
        assert_eq!(read_snapshot(&settings.path, log.as_ref()).unwrap().unwrap().last_seq, EventSeq(31));
    }
}
