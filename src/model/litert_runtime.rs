//! The only place that calls the LiteRT C API (through `litert-sys`). A session uses the process-wide
//! LiteRT environment (created once: it probes for accelerators and logs about each) and owns one
//! model and one compiled model, and exposes exactly what the TFLite embedding model needs:
//! signature names and shapes, resizing the batch dimension, and running one batch.
//!
//! Not `Sync`: one session runs one batch at a time. `Send` is sound because every handle is owned
//! by the session, never shared, and LiteRT's CPU objects are not bound to the thread that made them.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use litert_sys as sys;

use crate::model::ModelError;

/// Shape and element type of one signature tensor; -1 marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuntimeTensor {
    pub name: String,
    pub tensor_name: String,
    pub dimensions: Vec<i32>,
    pub is_float32: bool,
}

pub(crate) struct LiteRtSession {
    model_name: String,
    environment: sys::LiteRtEnvironment,
    model: sys::LiteRtModel,
    compiled_model: sys::LiteRtCompiledModel,
    /// `LiteRtCreateModelFromBuffer` does not copy the bytes; they must outlive `model`.
    _model_bytes: Box<[u8]>,
    pub input: RuntimeTensor,
    pub outputs: Vec<RuntimeTensor>,
    input_buffer: sys::LiteRtTensorBuffer,
    output_buffers: Vec<sys::LiteRtTensorBuffer>,
    /// Dimensions of the allocated input buffer; `None` before the first `prepare`.
    prepared_input_dimensions: Option<Vec<i32>>,
    /// How many values each output buffer holds (the output's size at the prepared batch).
    prepared_output_value_counts: Vec<usize>,
}

// SAFETY: see the module documentation; all pointers are exclusively owned by the session.
unsafe impl Send for LiteRtSession {}

const SIGNATURE_INDEX: sys::LiteRtParamIndex = 0;

fn status_meaning(status: sys::LiteRtStatus) -> &'static str {
    match status {
        sys::kLiteRtStatusErrorInvalidArgument => "invalid argument",
        sys::kLiteRtStatusErrorMemoryAllocationFailure => "memory allocation failure",
        sys::kLiteRtStatusErrorRuntimeFailure => "runtime failure",
        sys::kLiteRtStatusErrorMissingInputTensor => "missing input tensor",
        sys::kLiteRtStatusErrorUnsupported => "unsupported (an op or type the runtime cannot run)",
        sys::kLiteRtStatusErrorNotFound => "not found",
        sys::kLiteRtStatusErrorFileIO => "file i/o error",
        sys::kLiteRtStatusErrorInvalidFlatbuffer => "invalid flatbuffer",
        sys::kLiteRtStatusErrorCompilation => "compilation error",
        sys::kLiteRtStatusErrorIndexOOB => "index out of bounds",
        sys::kLiteRtStatusErrorShapeInferenceFailed => "shape inference failed",
        _ => "see litert_common.h",
    }
}

impl LiteRtSession {
    fn check(&self, status: sys::LiteRtStatus, operation: &'static str) -> Result<(), ModelError> {
        check_status(&self.model_name, status, operation)
    }

    /// Loads and compiles a model for the CPU.
    pub fn new(model_name: &str, model_bytes: Vec<u8>) -> Result<Self, ModelError> {
        let model_bytes = model_bytes.into_boxed_slice();
        let mut session = LiteRtSession {
            model_name: model_name.to_string(),
            environment: ptr::null_mut(),
            model: ptr::null_mut(),
            compiled_model: ptr::null_mut(),
            _model_bytes: model_bytes,
            input: RuntimeTensor {
                name: String::new(),
                tensor_name: String::new(),
                dimensions: vec![],
                is_float32: true,
            },
            outputs: Vec::new(),
            input_buffer: ptr::null_mut(),
            output_buffers: Vec::new(),
            prepared_input_dimensions: None,
            prepared_output_value_counts: Vec::new(),
        };
        // SAFETY: out-pointers are valid locals/fields; on failure `Drop` releases whatever was created.
        unsafe {
            session.environment =
                shared_environment().map_err(|status| runtime_error(model_name, status, "create the environment"))?;
            let status = sys::LiteRtCreateModelFromBuffer(
                session._model_bytes.as_ptr().cast::<c_void>(),
                session._model_bytes.len(),
                &mut session.model,
            );
            session.check(status, "load the model")?;
        }
        let (inputs, outputs) = session.read_signature()?;
        let [input] = <[RuntimeTensor; 1]>::try_from(inputs).map_err(|inputs| ModelError::UnexpectedTensor {
            model: model_name.to_string(),
            reason: format!("the model has {} inputs; humpback runs models with exactly one input", inputs.len()),
        })?;
        session.input = input;
        session.outputs = outputs;
        // SAFETY: options are created, used for compilation and destroyed here.
        unsafe {
            let mut options: sys::LiteRtOptions = ptr::null_mut();
            session.check(sys::LiteRtCreateOptions(&mut options), "create compilation options")?;
            let status = sys::LiteRtSetOptionsHardwareAccelerators(options, sys::kLiteRtHwAcceleratorCpu as _);
            let compile_status = if status == sys::kLiteRtStatusOk {
                sys::LiteRtCreateCompiledModel(session.environment, session.model, options, &mut session.compiled_model)
            } else {
                status
            };
            sys::LiteRtDestroyOptions(options);
            session.check(compile_status, "compile the model for the cpu")?;
        }
        Ok(session)
    }

    fn read_signature(&self) -> Result<(Vec<RuntimeTensor>, Vec<RuntimeTensor>), ModelError> {
        // SAFETY: `self.model` is a valid model; returned C strings live as long as the model and are
        // copied before it can go away.
        unsafe {
            let mut signature: sys::LiteRtSignature = ptr::null_mut();
            self.check(sys::LiteRtGetModelSignature(self.model, SIGNATURE_INDEX, &mut signature), "read signature 0")?;
            let mut input_count: sys::LiteRtParamIndex = 0;
            let mut output_count: sys::LiteRtParamIndex = 0;
            self.check(sys::LiteRtGetNumSignatureInputs(signature, &mut input_count), "count inputs")?;
            self.check(sys::LiteRtGetNumSignatureOutputs(signature, &mut output_count), "count outputs")?;
            let mut inputs = Vec::new();
            for index in 0..input_count {
                let mut name: *const c_char = ptr::null();
                self.check(sys::LiteRtGetSignatureInputName(signature, index, &mut name), "read an input name")?;
                let mut tensor: sys::LiteRtTensor = ptr::null_mut();
                let status = sys::LiteRtGetSignatureInputTensorByIndex(signature, index, &mut tensor);
                self.check(status, "read an input tensor")?;
                inputs.push(self.describe_tensor(name, tensor)?);
            }
            let mut outputs = Vec::new();
            for index in 0..output_count {
                let mut name: *const c_char = ptr::null();
                self.check(sys::LiteRtGetSignatureOutputName(signature, index, &mut name), "read an output name")?;
                let mut tensor: sys::LiteRtTensor = ptr::null_mut();
                let status = sys::LiteRtGetSignatureOutputTensorByIndex(signature, index, &mut tensor);
                self.check(status, "read an output tensor")?;
                outputs.push(self.describe_tensor(name, tensor)?);
            }
            Ok((inputs, outputs))
        }
    }

    /// SAFETY: `name` must be null or a valid C string, `tensor` a valid tensor of `self.model`.
    unsafe fn describe_tensor(
        &self,
        name: *const c_char,
        tensor: sys::LiteRtTensor,
    ) -> Result<RuntimeTensor, ModelError> {
        let copy = |text: *const c_char| {
            if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        let mut tensor_name: *const c_char = ptr::null();
        self.check(sys::LiteRtGetTensorName(tensor, &mut tensor_name), "read a tensor name")?;
        let mut ranked = sys::LiteRtRankedTensorType::default();
        self.check(sys::LiteRtGetRankedTensorType(tensor, &mut ranked), "read a tensor shape")?;
        let rank = (ranked.layout.rank() as usize).min(ranked.layout.dimensions.len());
        Ok(RuntimeTensor {
            name: copy(name),
            tensor_name: copy(tensor_name),
            dimensions: ranked.layout.dimensions[..rank].to_vec(),
            is_float32: ranked.element_type == sys::kLiteRtElementTypeFloat32,
        })
    }

    /// Makes the input `batch` windows tall (resizing a dynamic batch dimension) and allocates the
    /// input and output buffers. A session is prepared for one batch size only, before its first
    /// run: LiteRT 2.1.4 binds output buffers with the sizes the outputs had when a run starts, so
    /// resizing after a run could make it write past a buffer. Callers keep one session per batch
    /// size instead.
    pub fn prepare(&mut self, batch: usize, resize_batch_dimension: bool) -> Result<(), ModelError> {
        let mut dimensions: Vec<i32> = self.input.dimensions.iter().map(|&dimension| dimension.max(1)).collect();
        if resize_batch_dimension {
            if let Some(first) = dimensions.first_mut() {
                *first = i32::try_from(batch).map_err(|_| self.tensor_error(format!("batch {batch} is too large")))?;
            }
        }
        match &self.prepared_input_dimensions {
            Some(prepared) if *prepared == dimensions => return Ok(()),
            Some(prepared) => {
                return Err(self.tensor_error(format!(
                    "internal: session prepared for input {prepared:?} cannot take {dimensions:?}"
                )))
            }
            None => {}
        }
        let batch_rows = dimensions.first().copied().unwrap_or(1);
        // SAFETY: `compiled_model` is valid; `dimensions` outlives the calls; every buffer created is
        // stored in `self` and released in `release_buffers`.
        unsafe {
            if resize_batch_dimension {
                let status = sys::LiteRtCompiledModelResizeInputTensor(
                    self.compiled_model,
                    SIGNATURE_INDEX,
                    0,
                    dimensions.as_ptr().cast::<c_int>(),
                    dimensions.len(),
                );
                self.check(status, "resize the input batch")?;
            }
            self.allocate_input_buffer()?;
            // Allocating tensors propagates the new input shape to outputs of static shape; the
            // batch dimension of every output follows the batch and fixed dimensions come from the
            // signature, so most models get exactly sized buffers here and never run to find out.
            let reported = self.current_output_layouts(true)?;
            let expected = self.expected_output_layouts(&reported, batch_rows);
            let has_unresolved_dimensions =
                self.outputs.iter().any(|output| output.dimensions.iter().skip(1).any(|&dimension| dimension < 0));
            if !has_unresolved_dimensions {
                self.allocate_output_buffers(&expected)?;
            } else {
                // An output with a dimension only a run can tell (e.g. the frames of an STFT) gets
                // a buffer large enough for any size up to the input's length for that run (a
                // smaller buffer would make LiteRT refuse the run, printing "Custom allocation is
                // too small"); afterwards the sizes are known and exact buffers are made.
                let input_values_per_row: i32 = dimensions.iter().skip(1).product::<i32>().max(1);
                let generous = generous_output_layouts(
                    self.outputs.iter().map(|output| output.dimensions.as_slice()),
                    &expected,
                    input_values_per_row,
                );
                self.allocate_output_buffers(&generous)?;
                let zeros = vec![0.0f32; dimensions.iter().map(|&d| d.max(0) as usize).product()];
                self.copy_into_buffer(self.input_buffer, &zeros)?;
                self.run_bound_buffers()?;
                self.release_output_buffers();
                let after_run = self.current_output_layouts(true)?;
                let exact = self.expected_output_layouts(&after_run, batch_rows);
                self.allocate_output_buffers(&exact)?;
            }
            self.prepared_input_dimensions = Some(dimensions.clone());
        }
        Ok(())
    }

    /// SAFETY: `self.compiled_model` must be valid.
    unsafe fn allocate_input_buffer(&mut self) -> Result<(), ModelError> {
        let mut input_layout = sys::LiteRtLayout::default();
        let status =
            sys::LiteRtGetCompiledModelInputTensorLayout(self.compiled_model, SIGNATURE_INDEX, 0, &mut input_layout);
        self.check(status, "read the input layout")?;
        self.input_buffer = self.create_float_buffer(&input_layout, "allocate the input buffer")?.0;
        Ok(())
    }

    /// SAFETY: `self.compiled_model` must be valid. Allocates every output buffer with the layout
    /// the compiled model currently reports.
    unsafe fn allocate_output_buffers(&mut self, output_layouts: &[sys::LiteRtLayout]) -> Result<(), ModelError> {
        for layout in output_layouts {
            let (buffer, value_count) = self.create_float_buffer(layout, "allocate an output buffer")?;
            self.output_buffers.push(buffer);
            self.prepared_output_value_counts.push(value_count);
        }
        Ok(())
    }

    /// SAFETY: `self.compiled_model` must be valid. `allocate` asks LiteRT to allocate tensors
    /// first, which propagates a new input shape to the outputs.
    unsafe fn current_output_layouts(&self, allocate: bool) -> Result<Vec<sys::LiteRtLayout>, ModelError> {
        let mut output_layouts = vec![sys::LiteRtLayout::default(); self.outputs.len()];
        let status = sys::LiteRtGetCompiledModelOutputTensorLayouts(
            self.compiled_model,
            SIGNATURE_INDEX,
            output_layouts.len(),
            output_layouts.as_mut_ptr(),
            allocate,
        );
        self.check(status, "read the output layouts")?;
        Ok(output_layouts)
    }

    /// The layouts the outputs have at a batch of `rows`: an output whose signature has a dynamic
    /// batch dimension gets `rows` there; its other dimensions come from the signature where fixed,
    /// else from what LiteRT reports.
    fn expected_output_layouts(&self, reported: &[sys::LiteRtLayout], rows: i32) -> Vec<sys::LiteRtLayout> {
        expected_output_layouts(self.outputs.iter().map(|output| output.dimensions.as_slice()), reported, rows)
    }

    /// SAFETY: `self.environment` must be valid.
    unsafe fn create_float_buffer(
        &self,
        layout: &sys::LiteRtLayout,
        operation: &'static str,
    ) -> Result<(sys::LiteRtTensorBuffer, usize), ModelError> {
        let rank = (layout.rank() as usize).min(layout.dimensions.len());
        let mut value_count = 1usize;
        for &dimension in &layout.dimensions[..rank] {
            let dimension = usize::try_from(dimension).map_err(|_| {
                self.tensor_error(format!("tensor has unresolved dimension {dimension} after resizing"))
            })?;
            value_count = value_count.saturating_mul(dimension);
        }
        let mut tensor_layout = sys::LiteRtLayout::default();
        tensor_layout.set_rank(layout.rank());
        tensor_layout.set_has_strides(false);
        tensor_layout.dimensions[..rank].copy_from_slice(&layout.dimensions[..rank]);
        let tensor_type =
            sys::LiteRtRankedTensorType { element_type: sys::kLiteRtElementTypeFloat32, layout: tensor_layout };
        let mut buffer: sys::LiteRtTensorBuffer = ptr::null_mut();
        let status = sys::LiteRtCreateManagedTensorBuffer(
            self.environment,
            sys::kLiteRtTensorBufferTypeHostMemory,
            &tensor_type,
            value_count * std::mem::size_of::<f32>(),
            &mut buffer,
        );
        self.check(status, operation)?;
        Ok((buffer, value_count))
    }

    fn tensor_error(&self, reason: String) -> ModelError {
        ModelError::UnexpectedTensor { model: self.model_name.clone(), reason }
    }

    /// Value count of the prepared input buffer (batch included).
    pub fn prepared_input_value_count(&self) -> usize {
        self.prepared_input_dimensions
            .as_ref()
            .map_or(0, |dimensions| dimensions.iter().map(|&dimension| dimension.max(0) as usize).product())
    }

    /// Runs the prepared batch: copies `input` (exactly the prepared value count) in, runs, and
    /// returns all values of output `output_index`.
    pub fn run(&mut self, input: &[f32], output_index: usize) -> Result<Vec<f32>, ModelError> {
        let expected = self.prepared_input_value_count();
        if input.len() != expected || self.output_buffers.len() != self.outputs.len() {
            return Err(self.tensor_error(format!(
                "internal: batch has {} values, the prepared input holds {expected}",
                input.len()
            )));
        }
        self.run_raw(input)?;
        let Some(&output_value_count) = self.prepared_output_value_counts.get(output_index) else {
            return Err(self.tensor_error(format!("output index {output_index} is out of range")));
        };
        // SAFETY: the buffer was created for exactly this many f32 values.
        unsafe { self.copy_from_buffer(self.output_buffers[output_index], output_value_count) }
    }

    /// Copies `input` into the input buffer and runs the model.
    fn run_raw(&mut self, input: &[f32]) -> Result<(), ModelError> {
        // SAFETY: the input buffer holds at least `input.len()` f32 values (checked by the callers via
        // `prepared_input_value_count`); buffers are locked only for the duration of the copy.
        unsafe {
            self.copy_into_buffer(self.input_buffer, input)?;
            self.run_bound_buffers()
        }
    }

    /// Runs the model on the input and output buffers as they are.
    ///
    /// SAFETY: the input and output buffers must be allocated.
    unsafe fn run_bound_buffers(&mut self) -> Result<(), ModelError> {
        {
            let mut inputs = [self.input_buffer];
            let status = sys::LiteRtRunCompiledModel(
                self.compiled_model,
                SIGNATURE_INDEX,
                inputs.len(),
                inputs.as_mut_ptr(),
                self.output_buffers.len(),
                self.output_buffers.as_mut_ptr(),
            );
            self.check(status, "run the model")
        }
    }

    /// SAFETY: `buffer` must be a valid host buffer of at least `values.len()` f32 values.
    unsafe fn copy_into_buffer(&self, buffer: sys::LiteRtTensorBuffer, values: &[f32]) -> Result<(), ModelError> {
        let mut address: *mut c_void = ptr::null_mut();
        let status = sys::LiteRtLockTensorBuffer(buffer, &mut address, sys::kLiteRtTensorBufferLockModeWrite);
        self.check(status, "lock the input buffer")?;
        if address.is_null() {
            sys::LiteRtUnlockTensorBuffer(buffer);
            return Err(self.tensor_error("input buffer has no host memory".to_string()));
        }
        ptr::copy_nonoverlapping(values.as_ptr(), address.cast::<f32>(), values.len());
        self.check(sys::LiteRtUnlockTensorBuffer(buffer), "unlock the input buffer")
    }

    /// SAFETY: `buffer` must be a valid host buffer of at least `value_count` f32 values.
    unsafe fn copy_from_buffer(
        &self,
        buffer: sys::LiteRtTensorBuffer,
        value_count: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let mut address: *mut c_void = ptr::null_mut();
        let status = sys::LiteRtLockTensorBuffer(buffer, &mut address, sys::kLiteRtTensorBufferLockModeRead);
        self.check(status, "lock an output buffer")?;
        if address.is_null() {
            sys::LiteRtUnlockTensorBuffer(buffer);
            return Err(self.tensor_error("output buffer has no host memory".to_string()));
        }
        let values = std::slice::from_raw_parts(address.cast::<f32>(), value_count).to_vec();
        self.check(sys::LiteRtUnlockTensorBuffer(buffer), "unlock an output buffer")?;
        Ok(values)
    }

    fn release_input_buffer(&mut self) {
        // SAFETY: a non-null buffer was created by `LiteRtCreateManagedTensorBuffer` and is destroyed
        // exactly once (the field is cleared).
        unsafe {
            if !self.input_buffer.is_null() {
                sys::LiteRtDestroyTensorBuffer(self.input_buffer);
            }
        }
        self.input_buffer = ptr::null_mut();
    }

    fn release_output_buffers(&mut self) {
        // SAFETY: each buffer was created by `LiteRtCreateManagedTensorBuffer` and is destroyed
        // exactly once (drained).
        unsafe {
            for buffer in self.output_buffers.drain(..) {
                sys::LiteRtDestroyTensorBuffer(buffer);
            }
        }
        self.prepared_output_value_counts.clear();
    }

    fn release_buffers(&mut self) {
        self.release_input_buffer();
        self.release_output_buffers();
        self.prepared_input_dimensions = None;
    }
}

impl Drop for LiteRtSession {
    fn drop(&mut self) {
        self.release_buffers();
        // SAFETY: destroyed in reverse order of creation, each at most once.
        unsafe {
            if !self.compiled_model.is_null() {
                sys::LiteRtDestroyCompiledModel(self.compiled_model);
            }
            if !self.model.is_null() {
                sys::LiteRtDestroyModel(self.model);
            }
        }
    }
}

/// `expected` with every dimension the signature leaves open (after the batch) set to `bound`, for
/// a run that finds out the real sizes. Pure.
fn generous_output_layouts<'a>(
    signatures: impl Iterator<Item = &'a [i32]>,
    expected: &[sys::LiteRtLayout],
    bound: i32,
) -> Vec<sys::LiteRtLayout> {
    signatures
        .zip(expected)
        .map(|(signature, layout)| {
            let mut generous = *layout;
            let rank = (layout.rank() as usize).min(layout.dimensions.len());
            for (position, dimension) in generous.dimensions[..rank].iter_mut().enumerate().skip(1) {
                if signature.get(position).is_some_and(|&wanted| wanted < 0) {
                    *dimension = (*dimension).max(bound);
                }
            }
            generous
        })
        .collect()
}

/// See [`LiteRtSession::expected_output_layouts`]. Pure.
fn expected_output_layouts<'a>(
    signatures: impl Iterator<Item = &'a [i32]>,
    reported: &[sys::LiteRtLayout],
    rows: i32,
) -> Vec<sys::LiteRtLayout> {
    signatures
        .zip(reported)
        .map(|(signature, layout)| {
            let mut expected = *layout;
            let rank = (layout.rank() as usize).min(layout.dimensions.len());
            for (position, dimension) in expected.dimensions[..rank].iter_mut().enumerate() {
                match signature.get(position) {
                    Some(&wanted) if position == 0 && wanted < 0 => *dimension = rows,
                    Some(&wanted) if wanted > 0 => *dimension = wanted,
                    _ => {}
                }
            }
            expected
        })
        .collect()
}

fn check_status(model: &str, status: sys::LiteRtStatus, operation: &'static str) -> Result<(), ModelError> {
    if status == sys::kLiteRtStatusOk {
        return Ok(());
    }
    Err(runtime_error(model, status, operation))
}

fn runtime_error(model: &str, status: sys::LiteRtStatus, operation: &'static str) -> ModelError {
    ModelError::Runtime { model: model.to_string(), operation, status: status as i32, meaning: status_meaning(status) }
}

/// The LiteRT environment shared by all sessions; never destroyed (it lives as long as the process).
struct SharedEnvironment(sys::LiteRtEnvironment);

// SAFETY: a LiteRT environment is an internally synchronised, reference-counted context meant to be
// shared by the compiled models of a process; humpback never mutates or destroys it.
unsafe impl Send for SharedEnvironment {}
unsafe impl Sync for SharedEnvironment {}

static SHARED_ENVIRONMENT: std::sync::OnceLock<Result<SharedEnvironment, sys::LiteRtStatus>> =
    std::sync::OnceLock::new();

fn shared_environment() -> Result<sys::LiteRtEnvironment, sys::LiteRtStatus> {
    let created = SHARED_ENVIRONMENT.get_or_init(|| {
        let mut environment: sys::LiteRtEnvironment = ptr::null_mut();
        // SAFETY: no options; the out-pointer is a valid local.
        let status = unsafe { sys::LiteRtCreateEnvironment(0, ptr::null(), &mut environment) };
        if status == sys::kLiteRtStatusOk && !environment.is_null() {
            Ok(SharedEnvironment(environment))
        } else {
            Err(status)
        }
    });
    match created {
        Ok(environment) => Ok(environment.0),
        Err(status) => Err(*status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dimensions: &[i32]) -> sys::LiteRtLayout {
        let mut layout = sys::LiteRtLayout::default();
        layout.set_rank(dimensions.len() as _);
        layout.dimensions[..dimensions.len()].copy_from_slice(dimensions);
        layout
    }

    fn dimensions_of(layout: &sys::LiteRtLayout) -> Vec<i32> {
        layout.dimensions[..layout.rank() as usize].to_vec()
    }

    #[test]
    fn outputs_follow_the_batch_and_keep_fixed_dimensions_while_open_ones_get_room_for_one_run() {
        let signatures: [&[i32]; 3] = [&[-1, 64], &[4, 5], &[-1, -1, 32]];
        // What LiteRT reports right after resizing the input to 32 rows: stale sizes for outputs of
        // shape-dependent ops.
        let reported = [layout(&[1, 64]), layout(&[4, 5]), layout(&[1, 1, 32])];
        let expected = expected_output_layouts(signatures.iter().copied(), &reported, 32);
        let shapes: Vec<Vec<i32>> = expected.iter().map(dimensions_of).collect();
        assert_eq!(shapes, [vec![32, 64], vec![4, 5], vec![32, 1, 32]]);
        let generous = generous_output_layouts(signatures.iter().copied(), &expected, 16_000);
        let shapes: Vec<Vec<i32>> = generous.iter().map(dimensions_of).collect();
        assert_eq!(shapes, [vec![32, 64], vec![4, 5], vec![32, 16_000, 32]]);
    }
}
