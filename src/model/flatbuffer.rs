//! A small, bounds-checked reader for the parts of the TFLite flatbuffer (`schema.fbs`) that humpback
//! needs to describe a model without running it: operator codes, the tensors, inputs, outputs and
//! operators of every subgraph, and the signature definitions.
//!
//! Every offset read from the file is checked against the buffer, so a truncated or hostile file
//! gives an error, never a panic. Only the field numbers below are read; everything else is skipped.

/// A TFLite model as far as humpback cares about it.
#[derive(Debug, Clone, PartialEq)]
pub struct TfliteFlatbuffer {
    pub schema_version: u32,
    pub operator_codes: Vec<OperatorCode>,
    pub subgraphs: Vec<Subgraph>,
    pub signatures: Vec<SignatureDefinition>,
    /// What the file's TFLite Metadata (`TFLITE_METADATA` buffer) declares, when it has any.
    pub declared_audio: Option<DeclaredAudioProperties>,
}

/// `AudioProperties` of the first input in the TFLite Metadata schema (`metadata_schema.fbs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredAudioProperties {
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorCode {
    /// The builtin operator code (the larger of `deprecated_builtin_code` and `builtin_code`).
    pub builtin_code: i32,
    /// Set for custom operators (`builtin_code == 32`), e.g. `FlexRFFT` for a TensorFlow select op.
    pub custom_code: Option<String>,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subgraph {
    pub name: Option<String>,
    pub tensors: Vec<TensorDescription>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    /// The operator-code index of every operator, in execution order.
    pub operator_code_indices: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorDescription {
    pub name: String,
    /// The static shape; a dynamic dimension is stored as 1 here.
    pub shape: Vec<i32>,
    /// The shape with -1 for dynamic dimensions, when the converter wrote one.
    pub shape_signature: Option<Vec<i32>>,
    pub element_type: u8,
}

impl TensorDescription {
    /// The shape with -1 for dynamic dimensions.
    pub fn shape_with_dynamic_dimensions(&self) -> Vec<i32> {
        match &self.shape_signature {
            Some(signature) if signature.len() == self.shape.len() => signature.clone(),
            _ => self.shape.clone(),
        }
    }

    pub fn element_type_name(&self) -> &'static str {
        element_type_name(self.element_type)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignatureDefinition {
    pub key: Option<String>,
    pub subgraph_index: u32,
    pub inputs: Vec<SignatureTensor>,
    pub outputs: Vec<SignatureTensor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignatureTensor {
    pub name: String,
    pub tensor_index: u32,
}

/// Names of the TFLite `TensorType` enum values.
pub fn element_type_name(code: u8) -> &'static str {
    match code {
        0 => "float32",
        1 => "float16",
        2 => "int32",
        3 => "uint8",
        4 => "int64",
        5 => "string",
        6 => "bool",
        7 => "int16",
        8 => "complex64",
        9 => "int8",
        10 => "float64",
        11 => "complex128",
        12 => "uint64",
        13 => "resource",
        14 => "variant",
        15 => "uint32",
        16 => "uint16",
        17 => "int4",
        18 => "bfloat16",
        _ => "unknown",
    }
}

const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";
/// Limits that keep a hostile file from making us allocate without bound.
const MAXIMUM_VECTOR_LENGTH: usize = 1 << 24;

/// Parses a TFLite model. The error string says what is wrong and where.
pub fn parse_tflite_flatbuffer(bytes: &[u8]) -> Result<TfliteFlatbuffer, String> {
    if bytes.len() < 8 {
        return Err(format!("file is {} bytes long, too short for a flatbuffer", bytes.len()));
    }
    if &bytes[4..8] != FILE_IDENTIFIER {
        return Err("file identifier is not \"TFL3\" (not a tflite flatbuffer)".to_string());
    }
    let reader = Reader { bytes };
    let root = reader.table_at_offset_field(0)?;

    let schema_version = reader.scalar_u32(&root, 0)?.unwrap_or(0);
    let operator_codes = reader
        .table_vector(&root, 1)?
        .into_iter()
        .map(|table| read_operator_code(&reader, &table))
        .collect::<Result<Vec<_>, _>>()?;
    let subgraphs = reader
        .table_vector(&root, 2)?
        .into_iter()
        .map(|table| read_subgraph(&reader, &table))
        .collect::<Result<Vec<_>, _>>()?;
    let signatures = reader
        .table_vector(&root, 7)?
        .into_iter()
        .map(|table| read_signature(&reader, &table))
        .collect::<Result<Vec<_>, _>>()?;
    if subgraphs.is_empty() {
        return Err("model has no subgraphs".to_string());
    }
    let declared_audio = match metadata_buffer(&reader, &root)? {
        Some(metadata) => parse_metadata_audio_properties(metadata)?,
        None => None,
    };
    Ok(TfliteFlatbuffer { schema_version, operator_codes, subgraphs, signatures, declared_audio })
}

/// The bytes of the buffer the model's `metadata` entry named `TFLITE_METADATA` points at.
fn metadata_buffer<'bytes>(reader: &Reader<'bytes>, root: &Table) -> Result<Option<&'bytes [u8]>, String> {
    let mut buffer_index = None;
    for entry in reader.table_vector(root, 6)? {
        if reader.string(&entry, 0)?.as_deref() == Some("TFLITE_METADATA") {
            buffer_index = Some(reader.scalar_u32(&entry, 1)?.unwrap_or(0) as usize);
        }
    }
    let Some(buffer_index) = buffer_index else {
        return Ok(None);
    };
    let buffers = reader.table_vector(root, 4)?;
    let buffer = buffers
        .get(buffer_index)
        .ok_or_else(|| format!("TFLITE_METADATA names buffer {buffer_index}, but there are {}", buffers.len()))?;
    if let Some(data) = reader.byte_vector(buffer, 0)? {
        return Ok(Some(data));
    }
    // Models above 2 GB keep buffers after the flatbuffer: `offset` and `size` from the file start.
    let offset = reader.scalar_u64(buffer, 1)?.unwrap_or(0);
    let size = reader.scalar_u64(buffer, 2)?.unwrap_or(0);
    if offset > 1 && size > 0 {
        let start = usize::try_from(offset).map_err(|_| "metadata offset is too large".to_string())?;
        let length = usize::try_from(size).map_err(|_| "metadata size is too large".to_string())?;
        return reader.slice(start, length).map(Some);
    }
    Ok(None)
}

/// Reads the audio properties of the first subgraph's first input from a TFLite Metadata
/// flatbuffer (file identifier `M001`): ModelMetadata.subgraph_metadata (3) -> SubGraphMetadata
/// .input_tensor_metadata (2) -> TensorMetadata.content (3) -> Content.content_properties (union:
/// type 0, value 1; 4 is AudioProperties) -> AudioProperties { sample_rate (0), channels (1) }.
pub fn parse_metadata_audio_properties(bytes: &[u8]) -> Result<Option<DeclaredAudioProperties>, String> {
    const AUDIO_PROPERTIES: u8 = 4;
    if bytes.len() < 8 || &bytes[4..8] != b"M001" {
        return Err("the TFLITE_METADATA buffer is not a tflite metadata flatbuffer (no \"M001\")".to_string());
    }
    let reader = Reader { bytes };
    let root = reader.table_at_offset_field(0).map_err(|error| format!("TFLITE_METADATA: {error}"))?;
    let Some(subgraph) = reader.table_vector(&root, 3)?.into_iter().next() else {
        return Ok(None);
    };
    let Some(input) = reader.table_vector(&subgraph, 2)?.into_iter().next() else {
        return Ok(None);
    };
    let Some(content) = reader.table_field(&input, 3)? else {
        return Ok(None);
    };
    if reader.scalar_u8(&content, 0)? != Some(AUDIO_PROPERTIES) {
        return Ok(None);
    }
    let Some(audio) = reader.table_field(&content, 1)? else {
        return Ok(None);
    };
    Ok(Some(DeclaredAudioProperties {
        sample_rate: reader.scalar_u32(&audio, 0)?.filter(|&rate| rate > 0),
        channels: reader.scalar_u32(&audio, 1)?.filter(|&channels| channels > 0),
    }))
}

fn read_operator_code(reader: &Reader<'_>, table: &Table) -> Result<OperatorCode, String> {
    let deprecated_code = reader.scalar_i8(table, 0)?.unwrap_or(0);
    let custom_code = reader.string(table, 1)?;
    let version = reader.scalar_i32(table, 2)?.unwrap_or(1);
    let builtin_code = reader.scalar_i32(table, 3)?.unwrap_or(0);
    Ok(OperatorCode { builtin_code: builtin_code.max(i32::from(deprecated_code)), custom_code, version })
}

fn read_subgraph(reader: &Reader<'_>, table: &Table) -> Result<Subgraph, String> {
    let tensors = reader
        .table_vector(table, 0)?
        .into_iter()
        .map(|tensor| read_tensor(reader, &tensor))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = reader.i32_vector(table, 1)?.unwrap_or_default();
    let outputs = reader.i32_vector(table, 2)?.unwrap_or_default();
    let operator_code_indices = reader
        .table_vector(table, 3)?
        .into_iter()
        .map(|operator| Ok(reader.scalar_u32(&operator, 0)?.unwrap_or(0)))
        .collect::<Result<Vec<_>, String>>()?;
    let name = reader.string(table, 4)?;
    for index in inputs.iter().chain(outputs.iter()) {
        if usize::try_from(*index).map_or(true, |index| index >= tensors.len()) {
            return Err(format!("subgraph refers to tensor {index}, but it has {} tensors", tensors.len()));
        }
    }
    Ok(Subgraph { name, tensors, inputs, outputs, operator_code_indices })
}

fn read_tensor(reader: &Reader<'_>, table: &Table) -> Result<TensorDescription, String> {
    Ok(TensorDescription {
        shape: reader.i32_vector(table, 0)?.unwrap_or_default(),
        element_type: reader.scalar_u8(table, 1)?.unwrap_or(0),
        name: reader.string(table, 3)?.unwrap_or_default(),
        shape_signature: reader.i32_vector(table, 7)?,
    })
}

fn read_signature(reader: &Reader<'_>, table: &Table) -> Result<SignatureDefinition, String> {
    let read_maps = |field: usize| -> Result<Vec<SignatureTensor>, String> {
        reader
            .table_vector(table, field)?
            .into_iter()
            .map(|map| {
                Ok(SignatureTensor {
                    name: reader.string(&map, 0)?.unwrap_or_default(),
                    tensor_index: reader.scalar_u32(&map, 1)?.unwrap_or(0),
                })
            })
            .collect()
    };
    Ok(SignatureDefinition {
        inputs: read_maps(0)?,
        outputs: read_maps(1)?,
        key: reader.string(table, 2)?,
        subgraph_index: reader.scalar_u32(table, 4)?.unwrap_or(0),
    })
}

/// A table: its position in the buffer and the position of its vtable.
#[derive(Debug, Clone, Copy)]
struct Table {
    position: usize,
    vtable_position: usize,
    vtable_length: usize,
}

struct Reader<'bytes> {
    bytes: &'bytes [u8],
}

impl<'bytes> Reader<'bytes> {
    fn slice(&self, position: usize, length: usize) -> Result<&'bytes [u8], String> {
        position
            .checked_add(length)
            .and_then(|end| self.bytes.get(position..end))
            .ok_or_else(|| format!("offset {position}+{length} is outside the file ({} bytes)", self.bytes.len()))
    }

    fn read_u16(&self, position: usize) -> Result<u16, String> {
        let bytes = self.slice(position, 2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn read_u32(&self, position: usize) -> Result<u32, String> {
        let bytes = self.slice(position, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn read_i32(&self, position: usize) -> Result<i32, String> {
        let bytes = self.slice(position, 4)?;
        Ok(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Follows a `uoffset_t` stored at `position` (offsets are relative to where they are stored).
    fn follow_offset(&self, position: usize) -> Result<usize, String> {
        let offset = self.read_u32(position)? as usize;
        let target = position.checked_add(offset).ok_or("offset overflows")?;
        if target >= self.bytes.len() {
            return Err(format!("offset at {position} points outside the file"));
        }
        Ok(target)
    }

    fn table_at(&self, position: usize) -> Result<Table, String> {
        let vtable_relative = i64::from(self.read_i32(position)?);
        let vtable_position = i64::try_from(position).map_err(|_| "position too large")? - vtable_relative;
        let vtable_position = usize::try_from(vtable_position)
            .map_err(|_| format!("table at {position} has a vtable before the file"))?;
        let vtable_length = usize::from(self.read_u16(vtable_position)?);
        if vtable_length < 4 || vtable_length % 2 != 0 {
            return Err(format!("table at {position} has a malformed vtable (length {vtable_length})"));
        }
        self.slice(vtable_position, vtable_length)?;
        Ok(Table { position, vtable_position, vtable_length })
    }

    /// The root table, whose offset is stored at the start of the buffer.
    fn table_at_offset_field(&self, position: usize) -> Result<Table, String> {
        let target = self.follow_offset(position)?;
        self.table_at(target)
    }

    /// Absolute position of a field, or `None` when the field is absent (default value).
    fn field_position(&self, table: &Table, field: usize) -> Result<Option<usize>, String> {
        let entry = 4 + 2 * field;
        if entry + 2 > table.vtable_length {
            return Ok(None);
        }
        let relative = usize::from(self.read_u16(table.vtable_position + entry)?);
        if relative == 0 {
            return Ok(None);
        }
        Ok(Some(table.position + relative))
    }

    fn scalar_u8(&self, table: &Table, field: usize) -> Result<Option<u8>, String> {
        match self.field_position(table, field)? {
            Some(position) => Ok(Some(self.slice(position, 1)?[0])),
            None => Ok(None),
        }
    }

    fn scalar_i8(&self, table: &Table, field: usize) -> Result<Option<i8>, String> {
        Ok(self.scalar_u8(table, field)?.map(|value| value as i8))
    }

    fn scalar_u32(&self, table: &Table, field: usize) -> Result<Option<u32>, String> {
        match self.field_position(table, field)? {
            Some(position) => Ok(Some(self.read_u32(position)?)),
            None => Ok(None),
        }
    }

    fn scalar_u64(&self, table: &Table, field: usize) -> Result<Option<u64>, String> {
        match self.field_position(table, field)? {
            Some(position) => {
                let bytes = self.slice(position, 8)?;
                let mut array = [0u8; 8];
                array.copy_from_slice(bytes);
                Ok(Some(u64::from_le_bytes(array)))
            }
            None => Ok(None),
        }
    }

    /// A table stored in a field (an offset to it), or `None` when the field is absent.
    fn table_field(&self, table: &Table, field: usize) -> Result<Option<Table>, String> {
        match self.field_position(table, field)? {
            Some(position) => self.follow_offset(position).and_then(|at| self.table_at(at)).map(Some),
            None => Ok(None),
        }
    }

    fn byte_vector(&self, table: &Table, field: usize) -> Result<Option<&'bytes [u8]>, String> {
        let Some(position) = self.field_position(table, field)? else {
            return Ok(None);
        };
        let vector_position = self.follow_offset(position)?;
        let length = self.read_u32(vector_position)? as usize;
        self.slice(vector_position + 4, length).map(Some)
    }

    fn scalar_i32(&self, table: &Table, field: usize) -> Result<Option<i32>, String> {
        match self.field_position(table, field)? {
            Some(position) => Ok(Some(self.read_i32(position)?)),
            None => Ok(None),
        }
    }

    /// Position of the first element and the length of a vector field.
    fn vector(&self, table: &Table, field: usize, element_size: usize) -> Result<Option<(usize, usize)>, String> {
        let Some(position) = self.field_position(table, field)? else {
            return Ok(None);
        };
        let vector_position = self.follow_offset(position)?;
        let length = self.read_u32(vector_position)? as usize;
        if length > MAXIMUM_VECTOR_LENGTH {
            return Err(format!("vector at {vector_position} claims {length} elements"));
        }
        let start = vector_position + 4;
        self.slice(start, length.checked_mul(element_size).ok_or("vector too long")?)?;
        Ok(Some((start, length)))
    }

    fn i32_vector(&self, table: &Table, field: usize) -> Result<Option<Vec<i32>>, String> {
        let Some((start, length)) = self.vector(table, field, 4)? else {
            return Ok(None);
        };
        (0..length).map(|index| self.read_i32(start + 4 * index)).collect::<Result<Vec<_>, _>>().map(Some)
    }

    fn table_vector(&self, table: &Table, field: usize) -> Result<Vec<Table>, String> {
        let Some((start, length)) = self.vector(table, field, 4)? else {
            return Ok(Vec::new());
        };
        (0..length).map(|index| self.follow_offset(start + 4 * index).and_then(|at| self.table_at(at))).collect()
    }

    fn string(&self, table: &Table, field: usize) -> Result<Option<String>, String> {
        let Some(position) = self.field_position(table, field)? else {
            return Ok(None);
        };
        let string_position = self.follow_offset(position)?;
        let length = self.read_u32(string_position)? as usize;
        let bytes = self.slice(string_position + 4, length)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/models/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
    }

    #[test]
    fn reads_signature_names_and_shapes_of_the_waveform_fixture() {
        let model = parse_tflite_flatbuffer(&fixture("waveform_stft.tflite")).unwrap();
        assert_eq!(model.schema_version, 3);
        let signature = &model.signatures[0];
        assert_eq!(signature.key.as_deref(), Some("serving_default"));
        assert_eq!(signature.inputs[0].name, "waveform");
        let output_names: Vec<&str> = signature.outputs.iter().map(|output| output.name.as_str()).collect();
        assert_eq!(output_names, ["embedding", "logits", "spectrogram"]);
        let subgraph = &model.subgraphs[0];
        let input = &subgraph.tensors[subgraph.inputs[0] as usize];
        assert_eq!(input.shape, [1, 16000]);
        assert_eq!(input.shape_with_dynamic_dimensions(), [-1, 16000]);
        assert_eq!(input.element_type_name(), "float32");
    }

    #[test]
    fn every_truncation_of_a_model_is_an_error_not_a_panic() {
        let bytes = fixture("logmel_fixed1.tflite");
        for length in (0..bytes.len()).step_by(97) {
            // Most prefixes fail; a few may still parse if the cut is past everything we read.
            let _ = parse_tflite_flatbuffer(&bytes[..length]);
        }
        assert!(parse_tflite_flatbuffer(&bytes[..100]).is_err());
    }

    #[test]
    fn corrupted_offsets_are_errors_not_panics() {
        let original = fixture("flex_select_op.tflite");
        for position in 0..original.len().min(600) {
            for value in [0x00, 0x7f, 0xff] {
                let mut bytes = original.clone();
                bytes[position] = value;
                let _ = parse_tflite_flatbuffer(&bytes);
            }
        }
    }

    #[test]
    fn the_audio_properties_of_tflite_metadata_are_read() {
        let declared = parse_tflite_flatbuffer(&fixture("waveform_stft_metadata.tflite")).unwrap().declared_audio;
        assert_eq!(declared, Some(DeclaredAudioProperties { sample_rate: Some(16_000), channels: Some(1) }));
        assert_eq!(parse_tflite_flatbuffer(&fixture("waveform_stft.tflite")).unwrap().declared_audio, None);
    }

    #[test]
    fn corrupted_metadata_is_an_error_not_a_panic() {
        let original = fixture("waveform_stft_metadata.tflite");
        let start = original.windows(4).position(|window| window == b"M001").unwrap() - 4;
        for position in start..(start + 400).min(original.len()) {
            for value in [0x00, 0x7f, 0xff] {
                let mut bytes = original.clone();
                bytes[position] = value;
                let _ = parse_tflite_flatbuffer(&bytes);
            }
        }
    }

    #[test]
    fn a_file_without_the_tflite_identifier_is_rejected() {
        let error = parse_tflite_flatbuffer(b"RIFF\x24\x00\x00\x00WAVEfmt ").unwrap_err();
        assert!(error.contains("TFL3"), "{error}");
    }
}
