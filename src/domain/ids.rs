//! Typed identifiers. Every id in humpback is a newtype so that an audio file id can never be
//! passed where a job id is expected. Ids are assigned by the writer from counters folded from
//! the log, so they are small, stable numbers that make readable URLs (`/audio/3`).

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The aggregate kind this id names, as used in filters (`audio_file:3`).
            pub const KIND: &'static str = $kind;

            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.trim().parse::<u64>().map($name)
            }
        }
    };
}

numeric_id!(
    /// An audio file registered with humpback.
    AudioFileId,
    "audio_file"
);
numeric_id!(
    /// A processing (encoding) job.
    ProcessingJobId,
    "processing_job"
);
numeric_id!(
    /// The embeddings of one audio file under one encoding signature.
    EmbeddingSetId,
    "embedding_set"
);
numeric_id!(
    /// A clustering job.
    ClusteringJobId,
    "clustering_job"
);
numeric_id!(
    /// One cluster produced by a clustering job (unique across jobs).
    ClusterId,
    "cluster"
);
numeric_id!(
    /// A labelled time span of a recording (never reused, even after removal).
    AnnotationId,
    "annotation"
);

numeric_id!(
    /// A trained classifier (a detector); retraining makes a new one.
    ClassifierId,
    "classifier"
);
numeric_id!(
    /// A detection job: one classifier run over a scope of embedding sets.
    DetectionJobId,
    "detection_job"
);

/// The position of an event in the log. Sequences start at 1 and are contiguous;
/// `EventSeq(0)` means "before the first event".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventSeq(pub u64);

impl EventSeq {
    pub const BEFORE_FIRST: EventSeq = EventSeq(0);

    pub fn next(self) -> EventSeq {
        EventSeq(self.0 + 1)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn to_key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_key(key: &[u8]) -> Option<EventSeq> {
        let bytes: [u8; 8] = key.try_into().ok()?;
        Some(EventSeq(u64::from_be_bytes(bytes)))
    }
}

impl fmt::Display for EventSeq {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Identifies a worker (in-process worker threads are named `{host}:{pid}:{n}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl fmt::Display for WorkerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A SHA-256 digest in lowercase hex (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sha256Hex(pub String);

impl fmt::Display for Sha256Hex {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The encoding signature: decides whether an audio file was already encoded under a
/// configuration (seed spec 3.1). Lowercase hex SHA-256 of the canonical configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncodingSignature(pub String);

impl fmt::Display for EncodingSignature {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A reference to an aggregate, used to filter the log: `audio_file:3`, `processing_job:7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum AggregateRef {
    AudioFile(AudioFileId),
    ProcessingJob(ProcessingJobId),
    EmbeddingSet(EmbeddingSetId),
    ClusteringJob(ClusteringJobId),
    Cluster(ClusterId),
    Annotation(AnnotationId),
    Classifier(ClassifierId),
    DetectionJob(DetectionJobId),
}

impl fmt::Display for AggregateRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateRef::AudioFile(id) => write!(formatter, "{}:{id}", AudioFileId::KIND),
            AggregateRef::ProcessingJob(id) => write!(formatter, "{}:{id}", ProcessingJobId::KIND),
            AggregateRef::EmbeddingSet(id) => write!(formatter, "{}:{id}", EmbeddingSetId::KIND),
            AggregateRef::ClusteringJob(id) => write!(formatter, "{}:{id}", ClusteringJobId::KIND),
            AggregateRef::Cluster(id) => write!(formatter, "{}:{id}", ClusterId::KIND),
            AggregateRef::Annotation(id) => write!(formatter, "{}:{id}", AnnotationId::KIND),
            AggregateRef::Classifier(id) => write!(formatter, "{}:{id}", ClassifierId::KIND),
            AggregateRef::DetectionJob(id) => write!(formatter, "{}:{id}", DetectionJobId::KIND),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregateRefParseError {
    #[error("aggregate {0:?} is not of the form KIND:ID (kinds: audio_file, processing_job, embedding_set, clustering_job, cluster, annotation, classifier, detection_job)")]
    Malformed(String),
    #[error(
        "unknown aggregate kind {0:?} (kinds: audio_file, processing_job, embedding_set, clustering_job, cluster, annotation, classifier, detection_job)"
    )]
    UnknownKind(String),
    #[error("aggregate id {0:?} is not a whole number")]
    BadId(String),
}

impl FromStr for AggregateRef {
    type Err = AggregateRefParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, id) = text.split_once(':').ok_or_else(|| AggregateRefParseError::Malformed(text.to_string()))?;
        let id: u64 = id.trim().parse().map_err(|_| AggregateRefParseError::BadId(id.to_string()))?;
        match kind.trim() {
            AudioFileId::KIND => Ok(AggregateRef::AudioFile(AudioFileId(id))),
            ProcessingJobId::KIND => Ok(AggregateRef::ProcessingJob(ProcessingJobId(id))),
            EmbeddingSetId::KIND => Ok(AggregateRef::EmbeddingSet(EmbeddingSetId(id))),
            ClusteringJobId::KIND => Ok(AggregateRef::ClusteringJob(ClusteringJobId(id))),
            ClusterId::KIND => Ok(AggregateRef::Cluster(ClusterId(id))),
            AnnotationId::KIND => Ok(AggregateRef::Annotation(AnnotationId(id))),
            ClassifierId::KIND => Ok(AggregateRef::Classifier(ClassifierId(id))),
            DetectionJobId::KIND => Ok(AggregateRef::DetectionJob(DetectionJobId(id))),
            other => Err(AggregateRefParseError::UnknownKind(other.to_string())),
        }
    }
}

/// Lower-case hexadecimal of bytes (checksums, signatures).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_refs_round_trip_through_their_text_form() {
        for aggregate in [
            AggregateRef::AudioFile(AudioFileId(3)),
            AggregateRef::ProcessingJob(ProcessingJobId(7)),
            AggregateRef::EmbeddingSet(EmbeddingSetId(1)),
            AggregateRef::ClusteringJob(ClusteringJobId(9)),
            AggregateRef::Cluster(ClusterId(12)),
            AggregateRef::Annotation(AnnotationId(5)),
        ] {
            assert_eq!(aggregate.to_string().parse::<AggregateRef>(), Ok(aggregate));
        }
    }

    #[test]
    fn malformed_aggregate_refs_say_what_is_expected() {
        assert!(matches!("audio".parse::<AggregateRef>(), Err(AggregateRefParseError::Malformed(_))));
        assert!(matches!("whale:1".parse::<AggregateRef>(), Err(AggregateRefParseError::UnknownKind(_))));
        assert!(matches!("audio_file:x".parse::<AggregateRef>(), Err(AggregateRefParseError::BadId(_))));
    }

    #[test]
    fn sequence_keys_sort_like_numbers() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 1 << 40, 17].iter().map(|n| EventSeq(*n).to_key()).collect();
        keys.sort();
        let decoded: Vec<u64> = keys.iter().map(|k| EventSeq::from_key(k).unwrap().get()).collect();
        assert_eq!(decoded, vec![2, 17, 300, 1 << 40]);
    }
}
