//! Bringing recordings in: stage the bytes in `tmp/` while hashing them, probe them, and
//! register them, moving the bytes to `audio/raw/{id}/original.{ext}` just before the event
//! that says they are there. File names are metadata only: no path is built from them.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::decide::{AudioLocation, Command, RegisterAudioFile, Rejection};
use crate::domain::events::Event;
use crate::domain::ids::{AudioFileId, Sha256Hex};
use crate::services::Humpback;
use crate::writer::WriterError;

/// Extensions humpback imports from folders.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "mp3", "flac"];

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not decodable audio; the message names the file by its original name.
    #[error("{0}")]
    NotAudio(String),
    #[error("{path} is larger than the limit of {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{doing} {path}: {source}")]
    Io { doing: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// Storage (a bucket) could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
}

/// Bytes in `tmp/`, hashed, waiting to be registered (or, for a recording registered where it
/// sits on a shared path, the original file itself, which is never removed).
#[derive(Debug)]
pub struct StagedFile {
    pub temp_path: PathBuf,
    pub checksum_sha256: Sha256Hex,
    pub size_bytes: u64,
    /// The file is ours to remove (a copy in `tmp/`), not a user's original.
    pub owned: bool,
}

impl StagedFile {
    pub fn discard(self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// Hashes as it writes.
pub struct StagingWriter {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    size_bytes: u64,
    limit: u64,
}

impl StagingWriter {
    /// A new uniquely named file in `tmp_dir`.
    pub fn create(tmp_dir: &Path, limit: u64) -> Result<StagingWriter, IngestError> {
        std::fs::create_dir_all(tmp_dir).map_err(|source| IngestError::Io {
            doing: "creating",
            path: tmp_dir.to_path_buf(),
            source,
        })?;
        let named =
            tempfile::Builder::new().prefix("upload-").suffix(".part").tempfile_in(tmp_dir).map_err(|source| {
                IngestError::Io { doing: "creating a file in", path: tmp_dir.to_path_buf(), source }
            })?;
        let (file, path) = named.keep().map_err(|error| IngestError::Io {
            doing: "keeping",
            path: tmp_dir.to_path_buf(),
            source: error.error,
        })?;
        Ok(StagingWriter { file, path, hasher: Sha256::new(), size_bytes: 0, limit })
    }

    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        self.size_bytes += chunk.len() as u64;
        if self.size_bytes > self.limit {
            return Err(IngestError::TooLarge { path: "the upload".into(), limit: self.limit });
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(|source| IngestError::Io {
            doing: "writing",
            path: self.path.clone(),
            source,
        })
    }

    pub fn finish(self) -> Result<StagedFile, IngestError> {
        self.file.sync_all().map_err(|source| IngestError::Io { doing: "syncing", path: self.path.clone(), source })?;
        Ok(StagedFile {
            owned: true,
            temp_path: self.path,
            checksum_sha256: Sha256Hex(hex(&self.hasher.finalize())),
            size_bytes: self.size_bytes,
        })
    }

    /// Removes the partial file.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub use crate::domain::ids::hex;

/// Copies a readable source into `tmp/`, hashing it (the source is left untouched).
pub fn stage_copy(tmp_dir: &Path, mut source: impl Read, limit: u64) -> Result<StagedFile, IngestError> {
    let mut writer = StagingWriter::create(tmp_dir, limit)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let path = writer.path.clone();
                writer.abort();
                return Err(IngestError::Io { doing: "reading the source of", path, source: error });
            }
        };
        if let Err(error) = writer.write_chunk(&buffer[..read]) {
            writer.abort();
            return Err(error);
        }
    }
    writer.finish()
}

/// The result of registering one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "audio_file_id", rename_all = "snake_case")]
pub enum IngestOutcome {
    Added(AudioFileId),
    /// The same bytes were already registered.
    Duplicate(AudioFileId),
}

impl IngestOutcome {
    pub fn audio_file_id(self) -> AudioFileId {
        match self {
            IngestOutcome::Added(id) | IngestOutcome::Duplicate(id) => id,
        }
    }
}

/// Registers staged bytes: a duplicate is recognised by checksum before anything else; then the
/// bytes are probed (422-worthy errors name `original_filename`), moved into place and recorded.
/// Blocking. The staged file is consumed in every case.
pub fn register_staged(
    humpback: &Humpback,
    staged: StagedFile,
    original_filename: &str,
    folder: &str,
) -> Result<IngestOutcome, IngestError> {
    register(humpback, staged, original_filename, folder, None)
}

/// Registers the object at `url` where it sits (no copy), from a local copy made while its
/// checksum was computed (`staged`, consumed).
pub fn register_in_place(
    humpback: &Humpback,
    staged: StagedFile,
    original_filename: &str,
    folder: &str,
    url: &str,
) -> Result<IngestOutcome, IngestError> {
    register(humpback, staged, original_filename, folder, Some(url))
}

fn register(
    humpback: &Humpback,
    staged: StagedFile,
    original_filename: &str,
    folder: &str,
    in_place: Option<&str>,
) -> Result<IngestOutcome, IngestError> {
    if let Some(existing) =
        humpback.writer.read_state(|state| state.audio_file_by_checksum.get(&staged.checksum_sha256).copied())
    {
        staged.discard();
        return Ok(IngestOutcome::Duplicate(existing));
    }
    if staged.size_bytes == 0 {
        staged.discard();
        return Err(IngestError::NotAudio(format!("{original_filename} is empty (0 bytes)")));
    }
    let probe = match crate::audio::probe(&staged.temp_path) {
        Ok(probe) => probe,
        Err(error) => {
            let message = error.to_string().replace(&staged.temp_path.display().to_string(), original_filename);
            staged.discard();
            return Err(IngestError::NotAudio(message));
        }
    };
    let storage = humpback.storage.clone();
    let location = if let Some(url) = in_place {
        AudioLocation::InPlace(url.to_string())
    } else if storage.is_bucket() {
        // Uploaded before the registration (outside the writer's lock) under a key that does
        // not need the id; a duplicate has the same bytes, so the same key.
        let key =
            format!("audio/raw/sha256/{}.{}", staged.checksum_sha256.0, probe.suggested_extension.to_ascii_lowercase());
        if let Err(error) = storage.put_copy(&staged.temp_path, &key) {
            staged.discard();
            return Err(IngestError::Storage(error.to_string()));
        }
        AudioLocation::ByChecksum
    } else {
        AudioLocation::ById
    };
    let command = Command::RegisterAudioFile(RegisterAudioFile {
        original_filename: original_filename.chars().take(1000).collect(),
        folder: folder.to_string(),
        checksum_sha256: staged.checksum_sha256.clone(),
        size_bytes: staged.size_bytes,
        duration_seconds: probe.duration_seconds,
        sample_rate: probe.sample_rate,
        channels: probe.channels,
        codec: probe.codec.clone(),
        extension: probe.suggested_extension.clone(),
        recorded_at: crate::recording_time::find_recording_time(
            Some(&staged.temp_path),
            original_filename,
            &humpback.settings.time_patterns,
            None,
        ),
        location,
    });
    let temp_path = staged.temp_path.clone();
    let result = humpback.writer.execute_staged(command, |events| {
        let Some(Event::AudioFileRegistered(registered)) = events.first() else {
            return Err("registering audio produced no registration".to_string());
        };
        if in_place.is_some() {
            return Ok(());
        }
        // In a folder: the file itself, moved into place. In a bucket: the local copy (the
        // object was uploaded above).
        let destination = storage.local_path(&registered.stored_path).map_err(|error| error.to_string())?;
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(|error| format!("creating {}: {error}", parent.display()))?;
        }
        crate::artifacts::files::move_file(&temp_path, &destination)
            .map_err(|error| format!("moving the upload into place: {error}"))
    });
    if in_place.is_some() && staged.owned {
        let _ = std::fs::remove_file(&temp_path);
    }
    match result {
        Ok(envelopes) => match envelopes.first().map(|envelope| &envelope.event) {
            Some(Event::AudioFileRegistered(registered)) => Ok(IngestOutcome::Added(registered.audio_file_id)),
            _ => Err(IngestError::Writer(WriterError::Staging("no registration was recorded".into()))),
        },
        Err(WriterError::Rejected(Rejection::AudioFileAlreadyRegistered(existing))) => {
            staged.discard();
            Ok(IngestOutcome::Duplicate(existing))
        }
        Err(error) => {
            staged.discard();
            Err(error.into())
        }
    }
}

/// What a folder import did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ImportSummary {
    pub added: Vec<ImportedFile>,
    pub duplicates: Vec<ImportedFile>,
    pub rejected: Vec<RejectedFile>,
    /// Folders and links that were not entered (unreadable, a loop, outside the import roots).
    #[serde(default)]
    pub skipped: Vec<RejectedFile>,
}

impl ImportSummary {
    /// Files one file's outcome under added, duplicates or rejected.
    pub fn record(&mut self, display: &str, outcome: &Result<IngestOutcome, String>) {
        let path = display.to_string();
        match outcome {
            Ok(IngestOutcome::Added(id)) => self.added.push(ImportedFile { path, audio_file_id: *id }),
            Ok(IngestOutcome::Duplicate(id)) => self.duplicates.push(ImportedFile { path, audio_file_id: *id }),
            Err(reason) => self.rejected.push(RejectedFile { path, reason: reason.clone() }),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ImportedFile {
    pub path: String,
    pub audio_file_id: AudioFileId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RejectedFile {
    pub path: String,
    pub reason: String,
}

/// Why a folder asked for over HTTP may not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportPathRefusal {
    #[error(
        "importing a folder by its path on the server is off; start the server with --import-root DIR (repeatable) \
         to allow the folders below DIR, or import with the CLI (`humpback import DIR`) or by uploading"
    )]
    NoImportRoots,
    #[error("{path} is outside the folders this server may import from ({roots})")]
    OutsideImportRoots { path: String, roots: String },
    #[error("{0} is not a folder on the server (give an absolute path the server can read)")]
    NotAFolder(String),
}

impl ImportPathRefusal {
    /// Forbidden (403) or merely wrong (422).
    pub fn is_forbidden(&self) -> bool {
        !matches!(self, ImportPathRefusal::NotAFolder(_))
    }
}

/// The canonical folder an HTTP import may read: inside one of `roots` (themselves canonical),
/// after every link is resolved. Whether a path outside the roots exists is not revealed.
pub fn resolve_import_folder(requested: &Path, roots: &[PathBuf]) -> Result<PathBuf, ImportPathRefusal> {
    if roots.is_empty() {
        return Err(ImportPathRefusal::NoImportRoots);
    }
    let shown = requested.display().to_string();
    let outside = || ImportPathRefusal::OutsideImportRoots {
        path: shown.clone(),
        roots: roots.iter().map(|root| root.display().to_string()).collect::<Vec<_>>().join(", "),
    };
    let lexically_inside = requested.is_absolute()
        && !requested.components().any(|part| matches!(part, std::path::Component::ParentDir))
        && roots.iter().any(|root| requested.starts_with(root));
    match std::fs::canonicalize(requested) {
        Ok(canonical) if roots.iter().any(|root| canonical.starts_with(root)) => {
            if canonical.is_dir() {
                Ok(canonical)
            } else {
                Err(ImportPathRefusal::NotAFolder(shown))
            }
        }
        Ok(_) => Err(outside()),
        Err(_) if lexically_inside => Err(ImportPathRefusal::NotAFolder(shown)),
        Err(_) => Err(outside()),
    }
}

/// What a walk below a folder found: audio files (relative to the folder, sorted) and the
/// entries it could not or would not enter, each with its reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FoundAudioFiles {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<RejectedFile>,
}

/// Every WAV/MP3/FLAC below `root`, recursively. Symbolic links are followed, each folder is
/// entered once (a link back up the tree is a loop, skipped and listed), and with
/// `allowed_roots` a link leading outside them is skipped and listed. Folders that cannot be
/// read are skipped and listed; the walk goes on with the rest.
pub fn find_audio_files(root: &Path, allowed_roots: Option<&[PathBuf]>) -> FoundAudioFiles {
    find_audio_files_with(root, allowed_roots, |dir| {
        std::fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.path())).collect()
    })
}

/// [`find_audio_files`] with the folder listing given (tests inject failures a root user
/// cannot otherwise see, such as a folder without read permission).
pub fn find_audio_files_with(
    root: &Path,
    allowed_roots: Option<&[PathBuf]>,
    list_folder: impl Fn(&Path) -> std::io::Result<Vec<PathBuf>>,
) -> FoundAudioFiles {
    let mut found = FoundAudioFiles::default();
    let relative = |path: &Path| {
        let shown = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        if shown.is_empty() {
            ".".to_string()
        } else {
            shown
        }
    };
    let mut visited = std::collections::HashSet::new();
    if let Ok(canonical_root) = std::fs::canonicalize(root) {
        visited.insert(canonical_root);
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = match list_folder(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                found
                    .skipped
                    .push(RejectedFile { path: relative(&dir), reason: format!("cannot read this folder: {error}") });
                continue;
            }
        };
        entries.sort();
        for path in entries {
            let is_link = std::fs::symlink_metadata(&path).map(|meta| meta.file_type().is_symlink()).unwrap_or(false);
            let metadata = match std::fs::metadata(&path) {
                Ok(metadata) => metadata,
                Err(error) => {
                    let reason = if error.raw_os_error() == Some(40) {
                        "a symbolic link loop".to_string()
                    } else if is_link {
                        format!("a symbolic link that leads nowhere readable: {error}")
                    } else {
                        format!("cannot read it: {error}")
                    };
                    found.skipped.push(RejectedFile { path: relative(&path), reason });
                    continue;
                }
            };
            let is_audio = || {
                let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
                extension.is_some_and(|extension| AUDIO_EXTENSIONS.contains(&extension.as_str()))
            };
            let worth_a_look = metadata.is_dir() || (metadata.is_file() && is_audio());
            if !worth_a_look {
                continue;
            }
            if is_link || metadata.is_dir() {
                let canonical = match std::fs::canonicalize(&path) {
                    Ok(canonical) => canonical,
                    Err(error) => {
                        found.skipped.push(RejectedFile {
                            path: relative(&path),
                            reason: format!("cannot resolve it: {error}"),
                        });
                        continue;
                    }
                };
                if let Some(roots) = allowed_roots {
                    if !roots.iter().any(|allowed| canonical.starts_with(allowed)) {
                        found.skipped.push(RejectedFile {
                            path: relative(&path),
                            reason: "a symbolic link to a place outside the import roots".into(),
                        });
                        continue;
                    }
                }
                if metadata.is_dir() {
                    if !visited.insert(canonical.clone()) {
                        found.skipped.push(RejectedFile {
                            path: relative(&path),
                            reason: format!("a symbolic link loop (leads back to {})", relative(&canonical)),
                        });
                        continue;
                    }
                    pending.push(path);
                    continue;
                }
            }
            if let Ok(relative_path) = path.strip_prefix(root) {
                found.files.push(relative_path.to_path_buf());
            }
        }
    }
    found.files.sort();
    found.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// How a file found below an import root is shown and registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedName {
    /// The path below the root, with `/` separators.
    pub display: String,
    /// The folder metadata: the root's own name, then the folders below it.
    pub folder: String,
    /// The file's own name.
    pub filename: String,
}

/// `recordings/site-a/x.wav` below `recordings` gets the folder `recordings/site-a`.
pub fn imported_name(root: &Path, relative: &Path) -> ImportedName {
    let base = root.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let display = relative.to_string_lossy().replace('\\', "/");
    let folder_relative = relative.parent().map(|p| p.to_string_lossy().replace('\\', "/")).unwrap_or_default();
    let folder =
        [base, folder_relative.as_str()].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/");
    let filename = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ImportedName { display, folder, filename }
}

/// Imports every audio file below `root`, keeping each file's relative folder as its folder
/// (prefixed with `root`'s own name, so `recordings/site-a/x.wav` gets `recordings/site-a`).
/// `progress(done, total, path, outcome)` is called after each file.
/// With `allowed_roots` (imports asked for over HTTP) symbolic links leading outside them are
/// not followed.
pub fn import_folder(
    humpback: &Humpback,
    root: &Path,
    limit: u64,
    allowed_roots: Option<&[PathBuf]>,
    progress: impl FnMut(usize, usize, &str, &Result<IngestOutcome, String>),
) -> Result<ImportSummary, IngestError> {
    import_each(root, allowed_roots, progress, |path, name| {
        File::open(path)
            .map_err(|error| format!("cannot open {}: {error}", name.display))
            .and_then(|file| stage_copy(&humpback.data_dir.tmp_dir(), file, limit).map_err(|error| error.to_string()))
            .and_then(|staged| {
                register_staged(humpback, staged, &name.filename, &name.folder).map_err(|error| error.to_string())
            })
    })
}

/// Like [`import_folder`], but registers each file where it sits (`file:///…`), without a
/// copy: for an archive on a shared filesystem every worker mounts at the same path. Each file
/// is read once, for its checksum, and probed in place.
pub fn import_folder_in_place(
    humpback: &Humpback,
    root: &Path,
    allowed_roots: Option<&[PathBuf]>,
    progress: impl FnMut(usize, usize, &str, &Result<IngestOutcome, String>),
) -> Result<ImportSummary, IngestError> {
    let root = std::fs::canonicalize(root).map_err(|source| IngestError::Io {
        doing: "resolving",
        path: root.to_path_buf(),
        source,
    })?;
    import_each(&root, allowed_roots, progress, |path, name| {
        let (size_bytes, checksum_sha256) =
            hash_file(path).map_err(|error| format!("reading {}: {error}", name.display))?;
        let url = format!("file://{}", path.display());
        let original = StagedFile { temp_path: path.to_path_buf(), checksum_sha256, size_bytes, owned: false };
        register(humpback, original, &name.filename, &name.folder, Some(&url)).map_err(|error| error.to_string())
    })
}

fn import_each(
    root: &Path,
    allowed_roots: Option<&[PathBuf]>,
    mut progress: impl FnMut(usize, usize, &str, &Result<IngestOutcome, String>),
    mut register_one: impl FnMut(&Path, &ImportedName) -> Result<IngestOutcome, String>,
) -> Result<ImportSummary, IngestError> {
    let FoundAudioFiles { files, skipped } = find_audio_files(root, allowed_roots);
    let mut summary = ImportSummary { skipped, ..ImportSummary::default() };
    for (index, relative) in files.iter().enumerate() {
        let name = imported_name(root, relative);
        let outcome = register_one(&root.join(relative), &name);
        summary.record(&name.display, &outcome);
        progress(index + 1, files.len(), &name.display, &outcome);
    }
    Ok(summary)
}

/// A file's size and SHA-256, read once in blocks.
fn hash_file(path: &Path) -> std::io::Result<(u64, Sha256Hex)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut block)?;
        if read == 0 {
            break;
        }
        hasher.update(&block[..read]);
        size += read as u64;
    }
    Ok((size, Sha256Hex(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())))
}

/// Registers every audio object below an object URL (`s3://bucket/prefix/`) where it sits:
/// each is read once (into `tmp/`, hashing as it streams) to be probed, then registered by
/// URL and the local copy removed. Folders are the prefix's last part and the keys' folders
/// below it, as for a folder import. `progress` as for [`import_folder`].
pub fn import_object_prefix(
    humpback: &Humpback,
    url: &str,
    mut progress: impl FnMut(usize, usize, &str, &Result<IngestOutcome, String>),
) -> Result<ImportSummary, IngestError> {
    let base = url.trim_end_matches('/');
    let objects = crate::storage::bucket::list_object_url(&format!("{base}/"))
        .map_err(|error| IngestError::Storage(error.to_string()))?;
    let audio: Vec<_> = objects
        .into_iter()
        .filter(|object| {
            let extension = object.key.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
            extension.is_some_and(|extension| AUDIO_EXTENSIONS.contains(&extension.as_str()))
        })
        .collect();
    let root_name = base.rsplit('/').next().unwrap_or_default();
    let mut summary = ImportSummary::default();
    let tmp_dir = humpback.data_dir.tmp_dir();
    for (index, object) in audio.iter().enumerate() {
        let relative = object.key.strip_prefix(base).unwrap_or(&object.key).trim_start_matches('/');
        let ImportedName { display, folder, filename } = imported_name(Path::new(root_name), Path::new(relative));
        let outcome = stage_object(&tmp_dir, &object.key).and_then(|staged| {
            register_in_place(humpback, staged, &filename, &folder, &object.key).map_err(|error| error.to_string())
        });
        summary.record(&display, &outcome);
        progress(index + 1, audio.len(), &display, &outcome);
    }
    Ok(summary)
}

/// A local copy of an object in `tmp/`, with its size and checksum computed while it streamed.
fn stage_object(tmp_dir: &Path, url: &str) -> Result<StagedFile, String> {
    std::fs::create_dir_all(tmp_dir).map_err(|error| format!("creating {}: {error}", tmp_dir.display()))?;
    let temp_path = tempfile::Builder::new()
        .prefix("object-")
        .suffix(".part")
        .tempfile_in(tmp_dir)
        .and_then(|file| file.keep().map_err(|error| error.error))
        .map_err(|error| format!("creating a file in {}: {error}", tmp_dir.display()))?
        .1;
    match crate::storage::bucket::download_object_url(url, &temp_path) {
        Ok((size_bytes, checksum_sha256)) => Ok(StagedFile { temp_path, checksum_sha256, size_bytes, owned: true }),
        Err(error) => {
            let _ = std::fs::remove_file(&temp_path);
            Err(format!("reading {url}: {error}"))
        }
    }
}
