//! The Broadcast WAV (EBU Tech 3285) `bext` chunk's `OriginationDate` and `OriginationTime`,
//! read by a small bounded RIFF reader: at most [`MAX_CHUNKS`] chunk headers are visited, chunk
//! bodies are skipped by seeking, and only the first 338 bytes of `bext` are read.
//!
//! The stamp is the recorder's local time without a zone; callers read it as UTC unless told
//! an offset.

use std::io::{Read, Seek, SeekFrom};

use super::CivilDateTime;

/// Chunk headers visited before giving up.
pub const MAX_CHUNKS: usize = 64;
/// `Description` (256) + `Originator` (32) + `OriginatorReference` (32) bytes.
const ORIGINATION_DATE_OFFSET: usize = 320;
/// `OriginationDate` (10, `yyyy-mm-dd`) + `OriginationTime` (8, `hh-mm-ss`).
const ORIGINATION_LENGTH: usize = 18;

/// The origination date and time of the WAV file at `path`; `None` when it is not a RIFF/WAVE
/// file, has no `bext` chunk, or its stamp is empty or not a valid date.
pub fn read_origination_from_path(path: &std::path::Path) -> Option<CivilDateTime> {
    let file = std::fs::File::open(path).ok()?;
    read_origination(std::io::BufReader::new(file))
}

/// As [`read_origination_from_path`], from any seekable reader.
pub fn read_origination(mut reader: impl Read + Seek) -> Option<CivilDateTime> {
    let mut header = [0u8; 12];
    reader.read_exact(&mut header).ok()?;
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return None;
    }
    for _ in 0..MAX_CHUNKS {
        let mut chunk = [0u8; 8];
        reader.read_exact(&mut chunk).ok()?;
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as u64;
        if &chunk[0..4] == b"bext" {
            if size < (ORIGINATION_DATE_OFFSET + ORIGINATION_LENGTH) as u64 {
                return None;
            }
            let mut body = vec![0u8; ORIGINATION_DATE_OFFSET + ORIGINATION_LENGTH];
            reader.read_exact(&mut body).ok()?;
            return parse_origination(&body[ORIGINATION_DATE_OFFSET..]);
        }
        // Chunks are padded to an even length.
        let skip = size + (size & 1);
        reader.seek(SeekFrom::Current(i64::try_from(skip).ok()?)).ok()?;
    }
    None
}

/// `yyyy-mm-ddhh-mm-ss`: any single non-digit separator is allowed (EBU lists `-`, `_`, `:`,
/// space and `.`).
pub fn parse_origination(bytes: &[u8]) -> Option<CivilDateTime> {
    let text = bytes.get(..ORIGINATION_LENGTH)?;
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |v, d| v * 10 + u32::from(d - b'0')))
    };
    let separators_ok = [4, 7, 12, 15].iter().all(|&index| !text[index].is_ascii_digit());
    if !separators_ok {
        return None;
    }
    CivilDateTime::new(
        number(0..4)? as i32,
        number(5..7)?,
        number(8..10)?,
        number(10..12)?,
        number(13..15)?,
        number(16..18)?,
    )
}

/// A minimal WAV (16-bit mono PCM) with a `bext` chunk stamped `date` (`yyyy-mm-dd`) and
/// `time` (`hh:mm:ss`), for tests and fixtures.
pub fn wav_with_bext(date: &str, time: &str, samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let mut bext = vec![0u8; 602];
    bext[ORIGINATION_DATE_OFFSET..ORIGINATION_DATE_OFFSET + 10].copy_from_slice(&pad(date, 10));
    bext[ORIGINATION_DATE_OFFSET + 10..ORIGINATION_DATE_OFFSET + 18].copy_from_slice(&pad(time, 8));
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&sample_rate.to_le_bytes());
    fmt.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    fmt.extend_from_slice(&2u16.to_le_bytes());
    fmt.extend_from_slice(&16u16.to_le_bytes());
    let data: Vec<u8> = samples.iter().flat_map(|sample| sample.to_le_bytes()).collect();
    let mut body = b"WAVE".to_vec();
    for (id, chunk) in [(b"bext", &bext), (b"fmt ", &fmt), (b"data", &data)] {
        body.extend_from_slice(id);
        body.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        body.extend_from_slice(chunk);
        if chunk.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(body.len() as u32).to_le_bytes());
    wav.extend_from_slice(&body);
    wav
}

fn pad(text: &str, length: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = text.bytes().take(length).collect();
    bytes.resize(length, 0);
    bytes
}
