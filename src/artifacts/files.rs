//! Durable file moves: the primitive behind every promoted artifact.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ArtifactError;

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    move |source| ArtifactError::Io { doing, path, source }
}

/// Flushes a file's contents to disk.
pub fn fsync_file(path: &Path) -> Result<(), ArtifactError> {
    File::open(path).and_then(|file| file.sync_all()).map_err(io("syncing", path))
}

/// Flushes a directory entry list to disk (so a rename in it survives a crash).
pub fn fsync_dir(path: &Path) -> Result<(), ArtifactError> {
    File::open(path).and_then(|dir| dir.sync_all()).map_err(io("syncing directory", path))
}

/// Makes `temp` visible as `final_path`: fsync the file, rename (atomic on one filesystem),
/// fsync the directory. After this returns the artifact survives a crash.
pub fn promote(temp: &Path, final_path: &Path) -> Result<(), ArtifactError> {
    fsync_file(temp)?;
    std::fs::rename(temp, final_path).map_err(io("renaming into place", final_path))?;
    if let Some(parent) = final_path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Moves `from` to `to` durably: a rename on one filesystem; across filesystems (the data
/// directory's `tmp/` and a storage folder on a share), a copy to a temporary sibling of `to`,
/// promoted, then `from` removed.
pub fn move_file(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    match std::fs::rename(from, to) {
        Ok(()) => {
            if let Some(parent) = to.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::CrossesDevices => {
            let temp = temp_sibling(to);
            std::fs::copy(from, &temp).map_err(io("copying into", &temp))?;
            promote(&temp, to)?;
            remove_if_exists(from).map(|_| ())
        }
        Err(error) => Err(ArtifactError::Io { doing: "moving into place", path: to.to_path_buf(), source: error }),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, then promotes it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let temp = temp_sibling(path);
    write_atomically_with(path, |file| file.write_all(bytes).map_err(io("writing", &temp)))
}

/// Writes `path` through a temporary file beside it, which `fill` writes through a buffer,
/// then promotes it: for contents streamed rather than held in memory. The temporary file is
/// removed when `fill` or the write fails.
pub fn write_atomically_with<E: From<ArtifactError>>(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<File>) -> Result<(), E>,
) -> Result<(), E> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let temp = temp_sibling(path);
    let mut file = std::io::BufWriter::with_capacity(1 << 16, File::create(&temp).map_err(io("writing", &temp))?);
    let filled = fill(&mut file).and_then(|()| file.flush().map_err(|error| E::from(io("writing", &temp)(error))));
    drop(file);
    if let Err(error) = filled {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    promote(&temp, path).map_err(E::from)
}

/// `dir/name.tmp.ext` for `dir/name.ext` (the seed spec's `{signature}.tmp.parquet`).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("artifact");
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(extension) => format!("{stem}.tmp.{extension}"),
        None => format!("{stem}.tmp"),
    };
    path.with_file_name(name)
}

/// Lowercase hex SHA-256 of a file's bytes, read in blocks.
pub fn sha256_of_file(path: &Path) -> Result<crate::domain::ids::Sha256Hex, ArtifactError> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = File::open(path).map_err(io("opening", path))?;
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut block).map_err(io("reading", path))?;
        if read == 0 {
            break;
        }
        hasher.update(&block[..read]);
    }
    Ok(crate::domain::ids::Sha256Hex(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()))
}

/// Removes a file if it exists; a missing file is fine.
pub fn remove_if_exists(path: &Path) -> Result<bool, ArtifactError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(ArtifactError::Io { doing: "removing", path: path.to_path_buf(), source: error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_siblings_follow_the_seed_layout() {
        assert_eq!(temp_sibling(Path::new("a/b/abc.parquet")), PathBuf::from("a/b/abc.tmp.parquet"));
        assert_eq!(temp_sibling(Path::new("a/clusters.json")), PathBuf::from("a/clusters.tmp.json"));
    }

    #[test]
    fn writing_atomically_leaves_only_the_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x").join("clusters.json");
        write_atomically(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(!temp_sibling(&path).exists());
        assert!(!remove_if_exists(&temp_sibling(&path)).unwrap());
    }
}
