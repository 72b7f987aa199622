//! L2 normalisation and PCA (our own: covariance through a blocked matrix product, then the
//! top eigenvectors by orthogonal iteration with a Rayleigh-Ritz step solved by Jacobi).

use std::borrow::Cow;

use ndarray::{Array2, ArrayView2, Axis};

use super::parameters::DistanceMetric;

/// Scales every row to unit length in place; all-zero rows stay zero.
pub fn normalize_rows_l2(values: &mut [f32], dims: usize) {
    if dims == 0 {
        return;
    }
    for row in values.chunks_mut(dims) {
        let norm = row.iter().map(|value| (*value as f64) * (*value as f64)).sum::<f64>().sqrt();
        if norm > 0.0 {
            let scale = (1.0 / norm) as f32;
            row.iter_mut().for_each(|value| *value *= scale);
        }
    }
}

/// The rows as `metric` compares them: as they are for euclidean distance, scaled to unit
/// length for cosine (where euclidean distance between unit rows orders like cosine distance).
pub fn rows_for_metric(values: &[f32], dims: usize, metric: DistanceMetric) -> Cow<'_, [f32]> {
    match metric {
        DistanceMetric::Euclidean => Cow::Borrowed(values),
        DistanceMetric::Cosine => {
            let mut copy = values.to_vec();
            normalize_rows_l2(&mut copy, dims);
            Cow::Owned(copy)
        }
    }
}

/// The principal axes of a data set: `components` is `n_components x dims`, row-major.
pub struct PrincipalComponents {
    pub mean: Vec<f64>,
    pub components: Vec<Vec<f64>>,
    pub explained_variance: Vec<f64>,
}

/// Fits PCA with up to `n_components` axes (fewer if the data has fewer dimensions).
/// Deterministic: the sign of every axis is fixed so its largest-magnitude entry is positive.
pub fn fit_pca(values: &[f32], dims: usize, n_components: usize) -> PrincipalComponents {
    let rows = values.len().checked_div(dims).unwrap_or(0);
    let n_components = n_components.min(dims);
    let mut mean = vec![0.0f64; dims];
    for row in values.chunks(dims.max(1)) {
        for (sum, value) in mean.iter_mut().zip(row) {
            *sum += *value as f64;
        }
    }
    if rows > 0 {
        mean.iter_mut().for_each(|sum| *sum /= rows as f64);
    }
    let covariance = covariance_matrix(values, dims, &mean);
    let (eigenvalues, eigenvectors) = top_eigenpairs(&covariance, n_components);
    PrincipalComponents { mean, components: eigenvectors, explained_variance: eigenvalues }
}

impl PrincipalComponents {
    /// Projects `values` onto the axes: `rows x n_components`, row-major.
    pub fn transform(&self, values: &[f32], dims: usize) -> Vec<f32> {
        let n_components = self.components.len();
        let mut output = Vec::with_capacity(values.len() / dims.max(1) * n_components);
        for row in values.chunks(dims.max(1)) {
            for component in &self.components {
                let mut sum = 0.0f64;
                for ((value, mean), weight) in row.iter().zip(&self.mean).zip(component) {
                    sum += (*value as f64 - mean) * weight;
                }
                output.push(sum as f32);
            }
        }
        output
    }
}

/// PCA projection to `n_components` dimensions (fewer when the data has fewer).
pub fn pca_reduce(values: &[f32], dims: usize, n_components: usize) -> (Vec<f32>, usize) {
    let pca = fit_pca(values, dims, n_components);
    let output_dims = pca.components.len();
    (pca.transform(values, dims), output_dims)
}

/// Rows `pca_reduce_randomized` fits its axes on at most.
pub const RANDOMIZED_PCA_FIT_ROWS: usize = 4096;

/// PCA projection by randomized subspace iteration on the data itself (Halko, Martinsson &
/// Tropp 2011), as scikit-learn's randomized solver does for large inputs: four power
/// iterations on a seeded `dims x (n_components + 10)` basis, then Rayleigh-Ritz. Costs a few
/// thin matrix products instead of the `dims x dims` covariance; for the UMAP start, where an
/// approximate subspace is enough. Above `RANDOMIZED_PCA_FIT_ROWS` rows the axes are fitted on a
/// seeded sample of that many rows, and every row is projected on them. Axis signs as `fit_pca`.
pub fn pca_reduce_randomized(values: &[f32], dims: usize, n_components: usize, seed: u64) -> (Vec<f32>, usize) {
    let rows = values.len().checked_div(dims).unwrap_or(0);
    let count = n_components.min(dims).min(rows);
    let Ok(all_rows) = ArrayView2::from_shape((rows, dims), values) else { return (Vec::new(), 0) };
    if count == 0 {
        return (Vec::new(), 0);
    }
    let mut random = super::random::SeededRandom::new(seed);
    let sample: Option<Array2<f32>> = (rows > RANDOMIZED_PCA_FIT_ROWS).then(|| {
        let chosen = random.sample_indices(rows, RANDOMIZED_PCA_FIT_ROWS);
        let mut sample = Array2::<f32>::zeros((chosen.len(), dims));
        for (mut target, index) in sample.rows_mut().into_iter().zip(&chosen) {
            target.assign(&all_rows.row(*index));
        }
        sample
    });
    let data = sample.as_ref().map(|sample| sample.view()).unwrap_or(all_rows);
    let fit_rows = data.nrows();
    let width = (count + 10).min(dims);
    let mut mean = vec![0.0f64; dims];
    for row in data.rows() {
        for (sum, value) in mean.iter_mut().zip(row) {
            *sum += *value as f64;
        }
    }
    let mean = ndarray::Array1::from_iter(mean.iter().map(|sum| (sum / fit_rows as f64) as f32));
    // X_c Q = X Q - 1 (mean Q): no centred copy of the data.
    let centred_product_of = |data: ArrayView2<f32>, basis: &Array2<f32>| -> Array2<f32> {
        let mut product = data.dot(basis);
        let shift = mean.dot(basis);
        product.rows_mut().into_iter().for_each(|mut row| row -= &shift);
        product
    };
    let centred_product = |basis: &Array2<f32>| centred_product_of(data, basis);
    let to_f32 = |matrix: &Array2<f64>| matrix.mapv(|value| value as f32);
    let mut basis = Array2::<f64>::zeros((dims, width));
    basis.iter_mut().for_each(|value| *value = random.next_normal());
    orthonormalize_columns(&mut basis);
    for _ in 0..4 {
        let projected = centred_product(&to_f32(&basis));
        // X_c^T P = X^T P - mean (1^T P).
        let mut back = data.t().dot(&projected);
        let column_sums = projected.sum_axis(Axis(0));
        for (mut row, mean_value) in back.rows_mut().into_iter().zip(mean.iter()) {
            row.scaled_add(-*mean_value, &column_sums);
        }
        basis = back.mapv(|value| value as f64);
        orthonormalize_columns(&mut basis);
    }
    let projected = centred_product(&to_f32(&basis)).mapv(|value| value as f64);
    let small = projected.t().dot(&projected) / (fit_rows.max(2) - 1) as f64;
    let (eigenvalues, small_vectors) = jacobi_eigen(small.view());
    let mut full_vectors = Vec::with_capacity(small_vectors.len());
    for small_vector in &small_vectors {
        let vector = basis.dot(&ndarray::Array1::from_vec(small_vector.clone()));
        full_vectors.push(vector.to_vec());
    }
    let (_, components) = take_largest(eigenvalues, full_vectors, count);
    let mut component_matrix = Array2::<f32>::zeros((dims, components.len()));
    for (column, component) in components.iter().enumerate() {
        for (row, weight) in component.iter().enumerate() {
            component_matrix[[row, column]] = *weight as f32;
        }
    }
    let output = centred_product_of(all_rows, &component_matrix);
    (output.iter().copied().collect(), components.len())
}

fn covariance_matrix(values: &[f32], dims: usize, mean: &[f64]) -> Array2<f64> {
    let rows = values.len().checked_div(dims).unwrap_or(0);
    let mut covariance = Array2::<f64>::zeros((dims, dims));
    if rows == 0 {
        return covariance;
    }
    // Centre in blocks of rows (f64 for accuracy) and accumulate X^T X with the blocked gemm.
    const BLOCK_ROWS: usize = 2048;
    for block in values.chunks(BLOCK_ROWS * dims) {
        let block_rows = block.len() / dims;
        let mut centred = Array2::<f64>::zeros((block_rows, dims));
        for (row_index, row) in block.chunks(dims).enumerate() {
            for column in 0..dims {
                centred[[row_index, column]] = row[column] as f64 - mean[column];
            }
        }
        ndarray::linalg::general_mat_mul(1.0, &centred.t(), &centred, 1.0, &mut covariance);
    }
    covariance /= (rows.max(2) - 1) as f64;
    covariance
}

/// The `count` largest eigenpairs of a symmetric matrix, largest first.
pub(crate) fn top_eigenpairs(matrix: &Array2<f64>, count: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let size = matrix.nrows();
    if count == 0 || size == 0 {
        return (Vec::new(), Vec::new());
    }
    if size <= 64 {
        let (values, vectors) = jacobi_eigen(matrix.view());
        return take_largest(values, vectors, count);
    }
    // Orthogonal (subspace) iteration with oversampling, then Rayleigh-Ritz.
    let width = (count + 10).min(size);
    let mut basis = Array2::<f64>::zeros((size, width));
    let mut random = super::random::SeededRandom::new(0x5eed);
    basis.iter_mut().for_each(|value| *value = random.next_normal());
    orthonormalize_columns(&mut basis);
    for _ in 0..60 {
        let mut next = matrix.dot(&basis);
        orthonormalize_columns(&mut next);
        basis = next;
    }
    let projected = basis.t().dot(&matrix.dot(&basis));
    let (values, small_vectors) = jacobi_eigen(projected.view());
    let mut full_vectors = Vec::with_capacity(small_vectors.len());
    for small in &small_vectors {
        let mut vector = vec![0.0f64; size];
        for (column, weight) in small.iter().enumerate() {
            for row in 0..size {
                vector[row] += basis[[row, column]] * weight;
            }
        }
        full_vectors.push(vector);
    }
    take_largest(values, full_vectors, count)
}

fn take_largest(values: Vec<f64>, vectors: Vec<Vec<f64>>, count: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|left, right| values[*right].total_cmp(&values[*left]).then(left.cmp(right)));
    order.truncate(count);
    let mut chosen_values = Vec::new();
    let mut chosen_vectors = Vec::new();
    for index in order {
        let mut vector = vectors[index].clone();
        let largest =
            vector.iter().copied().fold(0.0f64, |best, value| if value.abs() > best.abs() { value } else { best });
        if largest < 0.0 {
            vector.iter_mut().for_each(|value| *value = -*value);
        }
        chosen_values.push(values[index].max(0.0));
        chosen_vectors.push(vector);
    }
    (chosen_values, chosen_vectors)
}

fn orthonormalize_columns(matrix: &mut Array2<f64>) {
    let columns = matrix.ncols();
    for column in 0..columns {
        for previous in 0..column {
            let dot: f64 = matrix.column(column).dot(&matrix.column(previous));
            let previous_column = matrix.column(previous).to_owned();
            matrix.column_mut(column).scaled_add(-dot, &previous_column);
        }
        let norm = matrix.column(column).dot(&matrix.column(column)).sqrt();
        if norm > 1e-300 {
            matrix.column_mut(column).mapv_inplace(|value| value / norm);
        } else {
            matrix.column_mut(column).fill(0.0);
        }
    }
}

/// Cyclic Jacobi eigen-decomposition of a small symmetric matrix: (values, vectors).
pub(crate) fn jacobi_eigen(matrix: ArrayView2<f64>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let size = matrix.nrows();
    let mut a = matrix.to_owned();
    let mut v = Array2::<f64>::eye(size);
    for _sweep in 0..100 {
        let off_diagonal: f64 = (0..size)
            .flat_map(|row| (0..size).filter(move |column| *column != row).map(move |column| (row, column)))
            .map(|(row, column)| a[[row, column]] * a[[row, column]])
            .sum();
        let scale: f64 = a.iter().map(|value| value * value).sum::<f64>().max(1e-300);
        if off_diagonal <= 1e-24 * scale {
            break;
        }
        for p in 0..size {
            for q in (p + 1)..size {
                let apq = a[[p, q]];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..size {
                    let akp = a[[k, p]];
                    let akq = a[[k, q]];
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..size {
                    let apk = a[[p, k]];
                    let aqk = a[[q, k]];
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..size {
                    let vkp = v[[k, p]];
                    let vkq = v[[k, q]];
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let values = (0..size).map(|index| a[[index, index]]).collect();
    let vectors = v.axis_iter(Axis(1)).map(|column| column.to_vec()).collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_unit_length_and_zero_rows_stay_zero() {
        let mut values = vec![3.0, 4.0, 0.0, 0.0];
        normalize_rows_l2(&mut values, 2);
        assert!((values[0] - 0.6).abs() < 1e-6 && (values[1] - 0.8).abs() < 1e-6);
        assert_eq!(&values[2..], &[0.0, 0.0]);
    }

    #[test]
    fn jacobi_finds_the_eigenvalues_of_a_known_matrix() {
        let matrix = ndarray::arr2(&[[2.0, 1.0], [1.0, 2.0]]);
        let (mut values, _) = jacobi_eigen(matrix.view());
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-10 && (values[1] - 3.0).abs() < 1e-10);
    }

    #[test]
    fn randomized_pca_agrees_with_the_covariance_pca_on_the_leading_axes() {
        let mut random = crate::clustering::random::SeededRandom::new(3);
        let dims = 90;
        let mut values = Vec::new();
        for _ in 0..800 {
            for column in 0..dims {
                let scale = match column {
                    7 => 12.0,
                    40 => 6.0,
                    _ => 1.0,
                };
                values.push((random.next_normal() * scale + column as f64 * 0.01) as f32);
            }
        }
        let (exact, exact_dims) = pca_reduce(&values, dims, 2);
        let (randomized, randomized_dims) = pca_reduce_randomized(&values, dims, 2, 5);
        assert_eq!((exact_dims, randomized_dims), (2, 2));
        for (ours, theirs) in randomized.iter().zip(&exact) {
            assert!((ours - theirs).abs() < 0.05 * (1.0 + theirs.abs()), "{ours} vs {theirs}");
        }
    }

    #[test]
    fn pca_finds_the_stretched_axis_in_high_dimensions() {
        // 300 rows in 80 dimensions, variance 100 along axis 5, 1 elsewhere.
        let mut random = crate::clustering::random::SeededRandom::new(1);
        let dims = 80;
        let mut values = Vec::new();
        for _ in 0..300 {
            for column in 0..dims {
                let scale = if column == 5 { 10.0 } else { 1.0 };
                values.push((random.next_normal() * scale) as f32);
            }
        }
        let pca = fit_pca(&values, dims, 2);
        assert!(pca.components[0][5].abs() > 0.99, "{}", pca.components[0][5]);
        assert!(pca.explained_variance[0] > 50.0);
        let (reduced, reduced_dims) = pca_reduce(&values, dims, 2);
        assert_eq!(reduced_dims, 2);
        assert_eq!(reduced.len(), 600);
    }
}
