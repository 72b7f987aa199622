//! k-nearest-neighbour searches: exact brute force (blocked matrix product, for any
//! dimension), an exact KD-tree (for the low-dimensional reduced space), and an approximate
//! search (random-projection forest, then NN-descent; for large high-dimensional sets).
//! Every list includes the point itself first (distance 0), as umap-learn's and
//! scikit-learn's do.

use ndarray::{Array2, ArrayView2};

use super::random::SeededRandom;

/// `rows x k` neighbour lists, row-major, nearest first, Euclidean distances.
#[derive(Debug, Clone)]
pub struct NeighborLists {
    pub k: usize,
    pub indices: Vec<u32>,
    pub distances: Vec<f32>,
}

impl NeighborLists {
    pub fn rows(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }
    pub fn row_indices(&self, row: usize) -> &[u32] {
        &self.indices[row * self.k..(row + 1) * self.k]
    }
    pub fn row_distances(&self, row: usize) -> &[f32] {
        &self.distances[row * self.k..(row + 1) * self.k]
    }
}

/// Independent accumulators in the distance loops: enough that the additions are not waiting
/// on each other (latency), so the compiler's vector code runs at throughput.
const LANES: usize = 32;

/// Accumulators of `dot` (only used on long rows): 64 are eight AVX2 registers.
const DOT_LANES: usize = 64;

/// The sum of the accumulators by halving (a tree of additions, not a chain of them): lane
/// for lane the same operations whatever the vector width, so the same bits.
#[inline(always)]
fn sum_lanes<const COUNT: usize>(mut sums: [f32; COUNT]) -> f32 {
    let mut width = COUNT / 2;
    while width > 0 {
        for lane in 0..width {
            sums[lane] += sums[lane + width];
        }
        width /= 2;
    }
    sums[0]
}

/// `|left - right|^2`. Sums in `LANES` independent accumulators, in the same order whatever the
/// instruction set, so the result is the same to the bit with or without AVX2.
#[inline]
pub fn squared_euclidean(left: &[f32], right: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { squared_euclidean_avx2(left, right) };
    }
    squared_euclidean_portable(left, right)
}

/// `squared_euclidean_portable` compiled for AVX2: twice as many lanes per instruction as the
/// SSE2 baseline, the same operations in the same order (no fused multiply-add), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn squared_euclidean_avx2(left: &[f32], right: &[f32]) -> f32 {
    squared_euclidean_portable(left, right)
}

#[inline(always)]
fn squared_euclidean_portable(left: &[f32], right: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let chunks = left.len().min(right.len()) / LANES;
    for (left_chunk, right_chunk) in left.chunks_exact(LANES).zip(right.chunks_exact(LANES)) {
        for lane in 0..LANES {
            let difference = left_chunk[lane] - right_chunk[lane];
            sums[lane] += difference * difference;
        }
    }
    let mut total = sum_lanes(sums);
    for index in chunks * LANES..left.len().min(right.len()) {
        let difference = left[index] - right[index];
        total += difference * difference;
    }
    total
}

/// A sorted, bounded list of the best candidates seen so far for one query.
struct BestList {
    capacity: usize,
    entries: Vec<(f32, u32)>,
}

impl BestList {
    fn new(capacity: usize) -> BestList {
        BestList { capacity, entries: Vec::with_capacity(capacity + 1) }
    }
    #[inline]
    fn worst(&self) -> f32 {
        if self.entries.len() < self.capacity {
            f32::INFINITY
        } else {
            self.entries[self.entries.len() - 1].0
        }
    }
    #[inline]
    fn offer(&mut self, distance: f32, index: u32) {
        if self.capacity == 0 || distance >= self.worst() {
            return;
        }
        let position = self
            .entries
            .partition_point(|(existing, existing_index)| (*existing, *existing_index) <= (distance, index));
        self.entries.insert(position, (distance, index));
        if self.entries.len() > self.capacity {
            self.entries.pop();
        }
    }
}

fn worker_count() -> usize {
    std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1).clamp(1, 8)
}

/// Exact kNN by brute force; `k` is capped at the number of rows.
pub fn exact_knn(values: &[f32], dims: usize, k: usize) -> NeighborLists {
    let rows = values.len().checked_div(dims).unwrap_or(0);
    let k = k.min(rows);
    if rows == 0 || k == 0 {
        return NeighborLists { k, indices: Vec::new(), distances: Vec::new() };
    }
    if dims <= 16 {
        return KdTree::build(values, dims).knn_all(k);
    }
    let data = ArrayView2::from_shape((rows, dims), values).expect("shape checked by caller");
    let norms: Vec<f32> = values.chunks(dims).map(|row| row.iter().map(|value| value * value).sum()).collect();
    let mut indices = vec![0u32; rows * k];
    let mut distances = vec![0.0f32; rows * k];
    const BLOCK: usize = 256;
    let block_count = rows.div_ceil(BLOCK);
    let workers = worker_count().min(block_count);
    let per_worker = block_count.div_ceil(workers);
    std::thread::scope(|scope| {
        let mut index_chunks = indices.chunks_mut(per_worker * BLOCK * k);
        let mut distance_chunks = distances.chunks_mut(per_worker * BLOCK * k);
        for worker in 0..workers {
            let (Some(index_chunk), Some(distance_chunk)) = (index_chunks.next(), distance_chunks.next()) else {
                break;
            };
            let data = &data;
            let norms = &norms;
            scope.spawn(move || {
                let first_row = worker * per_worker * BLOCK;
                let last_row = (first_row + per_worker * BLOCK).min(rows);
                let mut start = first_row;
                while start < last_row {
                    let end = (start + BLOCK).min(last_row);
                    let block = data.slice(ndarray::s![start..end, ..]);
                    let mut products = Array2::<f32>::zeros((end - start, rows));
                    ndarray::linalg::general_mat_mul(1.0, &block, &data.t(), 0.0, &mut products);
                    for (offset, product_row) in products.outer_iter().enumerate() {
                        let query = start + offset;
                        // Over-fetch a little, then re-rank with exact distances.
                        let mut best = BestList::new((k + 4).min(rows));
                        for (candidate, product) in product_row.iter().enumerate() {
                            let squared = (norms[query] + norms[candidate] - 2.0 * product).max(0.0);
                            best.offer(squared, candidate as u32);
                        }
                        let query_row = &values[query * dims..(query + 1) * dims];
                        let mut exact: Vec<(f32, u32)> = best
                            .entries
                            .iter()
                            .filter(|(_, candidate)| *candidate as usize != query)
                            .map(|(_, candidate)| {
                                let other = &values[*candidate as usize * dims..(*candidate as usize + 1) * dims];
                                (squared_euclidean(query_row, other).sqrt(), *candidate)
                            })
                            .collect();
                        exact.sort_by(|left, right| left.0.total_cmp(&right.0).then(left.1.cmp(&right.1)));
                        let local = (query - first_row) * k;
                        index_chunk[local] = query as u32;
                        distance_chunk[local] = 0.0;
                        for position in 1..k {
                            let (distance, candidate) = exact[position - 1];
                            index_chunk[local + position] = candidate;
                            distance_chunk[local + position] = distance;
                        }
                    }
                    start = end;
                }
            });
        }
    });
    NeighborLists { k, indices, distances }
}

/// An exact KD-tree over a row-major matrix (for low dimensions).
pub struct KdTree<'a> {
    pub(crate) values: &'a [f32],
    pub(crate) dims: usize,
    /// Row indices; node `i` covers `order[nodes[i].start..nodes[i].end]`.
    pub(crate) order: Vec<u32>,
    /// Nodes in preorder (a parent before its children); node 0 is the root.
    pub(crate) nodes: Vec<KdNode>,
}

pub(crate) struct KdNode {
    pub(crate) start: usize,
    pub(crate) end: usize,
    split_dimension: usize,
    split_value: f32,
    /// `usize::MAX` for leaves.
    pub(crate) left: usize,
    pub(crate) right: usize,
    lower: Vec<f32>,
    upper: Vec<f32>,
}

const LEAF_SIZE: usize = 32;

impl<'a> KdTree<'a> {
    pub fn build(values: &'a [f32], dims: usize) -> KdTree<'a> {
        let rows = values.len() / dims.max(1);
        let mut tree = KdTree { values, dims, order: (0..rows as u32).collect(), nodes: Vec::new() };
        if rows > 0 {
            tree.build_node(0, rows);
        }
        tree
    }

    pub(crate) fn row(&self, index: u32) -> &[f32] {
        &self.values[index as usize * self.dims..(index as usize + 1) * self.dims]
    }

    fn build_node(&mut self, start: usize, end: usize) -> usize {
        let dims = self.dims;
        let mut lower = vec![f32::INFINITY; dims];
        let mut upper = vec![f32::NEG_INFINITY; dims];
        for &index in &self.order[start..end] {
            let row = &self.values[index as usize * dims..(index as usize + 1) * dims];
            for dimension in 0..dims {
                lower[dimension] = lower[dimension].min(row[dimension]);
                upper[dimension] = upper[dimension].max(row[dimension]);
            }
        }
        let node_index = self.nodes.len();
        self.nodes.push(KdNode {
            start,
            end,
            split_dimension: 0,
            split_value: 0.0,
            left: usize::MAX,
            right: usize::MAX,
            lower: lower.clone(),
            upper: upper.clone(),
        });
        if end - start <= LEAF_SIZE {
            return node_index;
        }
        let split_dimension =
            (0..dims).max_by(|a, b| (upper[*a] - lower[*a]).total_cmp(&(upper[*b] - lower[*b]))).unwrap_or(0);
        if upper[split_dimension] - lower[split_dimension] <= 0.0 {
            return node_index; // all points equal: keep as a (large) leaf
        }
        let middle = start + (end - start) / 2;
        let values = self.values;
        self.order[start..end].select_nth_unstable_by(middle - start, |a, b| {
            values[*a as usize * dims + split_dimension].total_cmp(&values[*b as usize * dims + split_dimension])
        });
        let split_value = values[self.order[middle] as usize * dims + split_dimension];
        let left = self.build_node(start, middle);
        let right = self.build_node(middle, end);
        let node = &mut self.nodes[node_index];
        node.split_dimension = split_dimension;
        node.split_value = split_value;
        node.left = left;
        node.right = right;
        node_index
    }

    pub(crate) fn box_distance_squared(&self, node: &KdNode, query: &[f32]) -> f32 {
        let mut total = 0.0f32;
        for dimension in 0..self.dims {
            let value = query[dimension];
            let gap = if value < node.lower[dimension] {
                node.lower[dimension] - value
            } else if value > node.upper[dimension] {
                value - node.upper[dimension]
            } else {
                0.0
            };
            total += gap * gap;
        }
        total
    }

    fn search(&self, node_index: usize, query: &[f32], best: &mut BestList) {
        let node = &self.nodes[node_index];
        if self.box_distance_squared(node, query) >= best.worst() {
            return;
        }
        if node.left == usize::MAX {
            for &index in &self.order[node.start..node.end] {
                best.offer(squared_euclidean(query, self.row(index)), index);
            }
            return;
        }
        let (near, far) = if query[node.split_dimension] < node.split_value {
            (node.left, node.right)
        } else {
            (node.right, node.left)
        };
        self.search(near, query, best);
        self.search(far, query, best);
    }

    /// The `k` nearest rows of `query` (squared distances, nearest first).
    pub fn query(&self, query: &[f32], k: usize) -> Vec<(f32, u32)> {
        let mut best = BestList::new(k);
        if !self.nodes.is_empty() {
            self.search(0, query, &mut best);
        }
        best.entries
    }

    /// kNN of every row of the tree, self first.
    pub fn knn_all(&self, k: usize) -> NeighborLists {
        let rows = self.order.len();
        let mut indices = vec![0u32; rows * k];
        let mut distances = vec![0.0f32; rows * k];
        let workers = worker_count().min(rows.max(1));
        let per_worker = rows.div_ceil(workers);
        std::thread::scope(|scope| {
            for (worker, (index_chunk, distance_chunk)) in
                indices.chunks_mut(per_worker * k).zip(distances.chunks_mut(per_worker * k)).enumerate()
            {
                scope.spawn(move || {
                    for local in 0..index_chunk.len() / k {
                        let query = worker * per_worker + local;
                        let found = self.query(self.row(query as u32), k + 1);
                        index_chunk[local * k] = query as u32;
                        distance_chunk[local * k] = 0.0;
                        let mut position = 1;
                        for (squared, candidate) in found {
                            if candidate as usize == query || position >= k {
                                continue;
                            }
                            index_chunk[local * k + position] = candidate;
                            distance_chunk[local * k + position] = squared.sqrt();
                            position += 1;
                        }
                    }
                });
            }
        });
        NeighborLists { k, indices, distances }
    }
}

/// Settings of the approximate search (`approximate_knn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApproximateSearch {
    /// Random-projection trees whose leaves seed the lists.
    pub trees: usize,
    /// Rows per leaf at most.
    pub leaf_size: usize,
    /// NN-descent rounds at most (fewer when a round changes almost nothing).
    pub max_iterations: usize,
    /// New (and old) candidates per row and round.
    pub max_candidates: usize,
    pub seed: u64,
    /// Leaf pairs whose proposals are held at once before they are applied: the forest's
    /// leaves are joined in groups of about this many pairs. The lists keep the best entries
    /// under a total order, so the grouping never changes the result, only the peak memory
    /// (all 32 trees' pairs at once were 740 million proposals, 9 GB, for a million rows).
    pub leaf_pairs_per_group: usize,
}

/// 4 million pairs: 8 million proposals of 12 bytes, about 100 MB.
const LEAF_PAIRS_PER_GROUP: usize = 1 << 22;

impl ApproximateSearch {
    /// Close to pynndescent's defaults for `rows` rows and `k` neighbours: `5 + sqrt(rows) / 20`
    /// trees (at most 32), `max(5, log2(rows))` rounds, `k` candidates; leaves of `max(20, 2k)`
    /// rows.
    pub fn for_rows(rows: usize, k: usize, seed: u64) -> ApproximateSearch {
        let trees = (5 + ((rows as f64).sqrt() / 20.0).round() as usize).min(32);
        let max_iterations = ((rows.max(2) as f64).log2().round() as usize).max(5);
        ApproximateSearch {
            trees,
            leaf_size: (2 * k).max(20),
            max_iterations,
            max_candidates: k.clamp(4, 60),
            seed,
            leaf_pairs_per_group: LEAF_PAIRS_PER_GROUP,
        }
    }
}

/// The rows sharing a leaf in one random-projection tree: every node splits its rows by the
/// hyperplane halfway between two of them picked at random (a random side for rows on it, a
/// random halving when one side would be empty), down to `leaf_size` rows. Returns the row
/// order and the leaves as ranges of it.
fn random_projection_leaves(
    values: &[f32],
    dims: usize,
    leaf_size: usize,
    seed: u64,
) -> (Vec<u32>, Vec<std::ops::Range<usize>>) {
    let rows = values.len() / dims.max(1);
    let row = |index: u32| &values[index as usize * dims..(index as usize + 1) * dims];
    let mut random = SeededRandom::new(seed);
    let mut order: Vec<u32> = (0..rows as u32).collect();
    let mut leaves = Vec::new();
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    pending.push(0..rows);
    let mut normal = vec![0.0f32; dims];
    let mut sides: Vec<bool> = Vec::new();
    while let Some(range) = pending.pop() {
        let size = range.len();
        if size <= leaf_size.max(1) {
            leaves.push(range);
            continue;
        }
        let first = order[range.start + random.next_below(size)];
        let mut second = order[range.start + random.next_below(size - 1)];
        if second == first {
            second = order[range.end - 1];
        }
        let mut offset = 0.0f32;
        for ((weight, left), right) in normal.iter_mut().zip(row(first)).zip(row(second)) {
            *weight = left - right;
            offset += *weight * (left + right) / 2.0;
        }
        sides.clear();
        for &index in &order[range.clone()] {
            let margin = dot(&normal, row(index)) - offset;
            sides.push(if margin == 0.0 { random.next_u64() & 1 == 0 } else { margin > 0.0 });
        }
        let left_count = sides.iter().filter(|side| **side).count();
        let middle = if left_count == 0 || left_count == size {
            // Every row on one side (duplicates): halve at random.
            let slice = &mut order[range.clone()];
            for position in (1..slice.len()).rev() {
                slice.swap(position, random.next_below(position + 1));
            }
            range.start + size / 2
        } else {
            // Stable partition: left side first.
            let slice = &order[range.clone()];
            let mut partitioned: Vec<u32> =
                slice.iter().zip(&sides).filter(|(_, side)| **side).map(|(i, _)| *i).collect();
            partitioned.extend(slice.iter().zip(&sides).filter(|(_, side)| !**side).map(|(i, _)| *i));
            order[range.clone()].copy_from_slice(&partitioned);
            range.start + left_count
        };
        pending.push(middle..range.end);
        pending.push(range.start..middle);
    }
    (order, leaves)
}

/// The dot product, summed like `squared_euclidean` (the same bits with or without AVX2).
#[inline]
fn dot(left: &[f32], right: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { dot_avx2(left, right) };
    }
    dot_portable(left, right)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(left: &[f32], right: &[f32]) -> f32 {
    dot_portable(left, right)
}

#[inline(always)]
fn dot_portable(left: &[f32], right: &[f32]) -> f32 {
    let mut sums = [0.0f32; DOT_LANES];
    let chunks = left.len().min(right.len()) / DOT_LANES;
    for (left_chunk, right_chunk) in left.chunks_exact(DOT_LANES).zip(right.chunks_exact(DOT_LANES)) {
        for lane in 0..DOT_LANES {
            sums[lane] += left_chunk[lane] * right_chunk[lane];
        }
    }
    let mut total = sum_lanes(sums);
    for index in chunks * DOT_LANES..left.len().min(right.len()) {
        total += left[index] * right[index];
    }
    total
}

/// Per row a sorted, bounded list of (squared distance, index, is_new), stored flat:
/// `capacity` slots per row, unused slots at infinity.
struct CandidateHeaps {
    capacity: usize,
    distances: Vec<f32>,
    indices: Vec<u32>,
    fresh: Vec<bool>,
}

/// One proposed entry: `candidate` at `distance` for `row`.
#[derive(Clone, Copy)]
struct Proposal {
    row: u32,
    candidate: u32,
    distance: f32,
}

/// Inserts into one row's sorted slots (the lists keep the best `capacity` entries under the
/// total order (distance, index), so the result does not depend on the order of offers).
fn offer_to_row(distances: &mut [f32], indices: &mut [u32], fresh: &mut [bool], distance: f32, candidate: u32) -> bool {
    let capacity = distances.len();
    let last = capacity - 1;
    if (distance, candidate) >= (distances[last], indices[last]) {
        return false;
    }
    if indices.contains(&candidate) {
        return false;
    }
    let position = distances
        .iter()
        .zip(indices.iter())
        .position(|(existing, existing_index)| (distance, candidate) < (*existing, *existing_index))
        .unwrap_or(last);
    for slot in (position + 1..capacity).rev() {
        distances[slot] = distances[slot - 1];
        indices[slot] = indices[slot - 1];
        fresh[slot] = fresh[slot - 1];
    }
    distances[position] = distance;
    indices[position] = candidate;
    fresh[position] = true;
    true
}

impl CandidateHeaps {
    fn new(rows: usize, capacity: usize) -> CandidateHeaps {
        CandidateHeaps {
            capacity,
            distances: vec![f32::INFINITY; rows * capacity],
            indices: vec![u32::MAX; rows * capacity],
            fresh: vec![false; rows * capacity],
        }
    }

    fn worst(&self, row: u32) -> f32 {
        self.distances[(row as usize + 1) * self.capacity - 1]
    }

    /// Applies proposals on `workers` threads, each owning a contiguous block of rows;
    /// `buckets[producer][owner]` holds the proposals for the owner's rows. Returns how many
    /// lists changed.
    fn apply(&mut self, buckets: &[Vec<Vec<Proposal>>], rows_per_owner: usize) -> usize {
        let capacity = self.capacity;
        let chunk = rows_per_owner * capacity;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .distances
                .chunks_mut(chunk)
                .zip(self.indices.chunks_mut(chunk))
                .zip(self.fresh.chunks_mut(chunk))
                .enumerate()
                .map(|(owner, ((distances, indices), fresh))| {
                    scope.spawn(move || {
                        let first_row = owner * rows_per_owner;
                        let mut changed = 0usize;
                        for producer in buckets {
                            let Some(proposals) = producer.get(owner) else { continue };
                            for proposal in proposals {
                                let local = (proposal.row as usize - first_row) * capacity;
                                if offer_to_row(
                                    &mut distances[local..local + capacity],
                                    &mut indices[local..local + capacity],
                                    &mut fresh[local..local + capacity],
                                    proposal.distance,
                                    proposal.candidate,
                                ) {
                                    changed += 1;
                                }
                            }
                        }
                        changed
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap_or(0)).sum()
        })
    }
}

/// Runs `produce(first, last, emit)` over `0..count` split across workers, each emitting
/// proposals, and sorts them into `buckets[producer][owner]` by the row that owns them.
fn produce_proposals<F>(count: usize, workers: usize, rows_per_owner: usize, produce: F) -> Vec<Vec<Vec<Proposal>>>
where
    F: Fn(usize, usize, &mut dyn FnMut(Proposal)) + Sync,
{
    let per_worker = count.div_ceil(workers.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let produce = &produce;
                scope.spawn(move || {
                    let mut buckets: Vec<Vec<Proposal>> = vec![Vec::new(); workers];
                    let first = (worker * per_worker).min(count);
                    let last = (first + per_worker).min(count);
                    produce(first, last, &mut |proposal: Proposal| {
                        buckets[proposal.row as usize / rows_per_owner].push(proposal)
                    });
                    buckets
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap_or_default()).collect()
    })
}

/// Columns of the sketch the random-projection trees are built on (see [`sketch_for_trees`]).
const SKETCH_DIMS: usize = 64;

/// The rows projected on `SKETCH_DIMS` seeded Gaussian directions (a Johnson-Lindenstrauss
/// sketch, distances kept to within a few tens of percent), when the rows are wider than that.
/// The trees only need each row's side of a hyperplane through two nearby rows: on the sketch
/// (5 MB for 20 000 rows) every level of every tree reads cache-resident rows, where the full
/// rows (100 MB at 1280 dimensions) came from memory at random, each level of each tree
/// once: two thirds of the search's time. The leaves' pairs and NN-descent use full distances.
fn sketch_for_trees(values: &[f32], dims: usize, seed: u64) -> Option<Vec<f32>> {
    let rows = values.len() / dims.max(1);
    if dims <= SKETCH_DIMS * 2 || rows == 0 {
        return None;
    }
    let mut random = SeededRandom::new(seed);
    let directions = Array2::from_shape_fn((dims, SKETCH_DIMS), |_| random.next_normal() as f32);
    let mut sketch = vec![0.0f32; rows * SKETCH_DIMS];
    let workers = worker_count().min(rows);
    let rows_per_worker = rows.div_ceil(workers);
    std::thread::scope(|scope| {
        for (input, output) in
            values.chunks(rows_per_worker * dims).zip(sketch.chunks_mut(rows_per_worker * SKETCH_DIMS))
        {
            let directions = &directions;
            scope.spawn(move || {
                let chunk_rows = input.len() / dims;
                let (Ok(input), Ok(mut output)) = (
                    ArrayView2::from_shape((chunk_rows, dims), input),
                    ndarray::ArrayViewMut2::from_shape((chunk_rows, SKETCH_DIMS), output),
                ) else {
                    return;
                };
                ndarray::linalg::general_mat_mul(1.0, &input, directions, 0.0, &mut output);
            });
        }
    });
    Some(sketch)
}

/// Approximate kNN (self first, like `exact_knn`): the leaves of a forest of random-projection
/// trees give every row its first candidates, then NN-descent (Dong, Moses & Li 2011) joins
/// the neighbours of neighbours until a round improves almost nothing. Deterministic for a
/// seed whatever the thread count: trees are seeded one by one, distances are computed in
/// parallel, and every list keeps the best entries under a total order, so the order in which
/// proposals arrive does not matter.
pub fn approximate_knn(values: &[f32], dims: usize, k: usize, search: &ApproximateSearch) -> NeighborLists {
    let rows = values.len() / dims.max(1);
    let k = k.min(rows);
    if rows <= 2 || k <= 1 || rows <= search.leaf_size {
        return exact_knn(values, dims, k);
    }
    let capacity = k - 1; // excluding self
    let row = |index: u32| &values[index as usize * dims..(index as usize + 1) * dims];
    // |x - y|^2 = |x|^2 + |y|^2 - 2 x.y: a dot product is cheaper than a difference. The lists
    // are ranked by it; the distances returned are recomputed exactly at the end.
    let norms: Vec<f32> = (0..rows as u32).map(|index| dot(row(index), row(index))).collect();
    let distance = |first: u32, second: u32| {
        (norms[first as usize] + norms[second as usize] - 2.0 * dot(row(first), row(second))).max(0.0)
    };
    let workers = worker_count().min(rows);
    let rows_per_owner = rows.div_ceil(workers);
    let mut heaps = CandidateHeaps::new(rows, capacity);

    // 1. Random-projection forest, trees built in parallel (on the sketch of wide rows).
    let sketch = sketch_for_trees(values, dims, search.seed ^ 0x243f_6a88_85a3_08d3);
    let (tree_values, tree_dims) = match &sketch {
        Some(sketch) => (sketch.as_slice(), SKETCH_DIMS),
        None => (values, dims),
    };
    let forest: Vec<(Vec<u32>, Vec<std::ops::Range<usize>>)> = std::thread::scope(|scope| {
        let per_worker = search.trees.div_ceil(workers);
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                scope.spawn(move || {
                    (worker * per_worker..((worker + 1) * per_worker).min(search.trees))
                        .map(|tree| {
                            let tree_seed =
                                search.seed.wrapping_add((tree as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                            random_projection_leaves(tree_values, tree_dims, search.leaf_size, tree_seed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|handle| handle.join().unwrap_or_default()).collect()
    });
    let leaves: Vec<&[u32]> =
        forest.iter().flat_map(|(order, ranges)| ranges.iter().map(move |range| &order[range.clone()])).collect();
    let mut group_start = 0;
    while group_start < leaves.len() {
        let mut group_end = group_start;
        let mut pairs = 0usize;
        while group_end < leaves.len() && (group_end == group_start || pairs < search.leaf_pairs_per_group.max(1)) {
            let size = leaves[group_end].len();
            pairs += size * size.saturating_sub(1) / 2;
            group_end += 1;
        }
        let group = &leaves[group_start..group_end];
        let buckets = produce_proposals(group.len(), workers, rows_per_owner, |first, last, emit| {
            for leaf in &group[first..last] {
                for (position, &left) in leaf.iter().enumerate() {
                    for &right in &leaf[position + 1..] {
                        let squared = distance(left, right);
                        emit(Proposal { row: left, candidate: right, distance: squared });
                        emit(Proposal { row: right, candidate: left, distance: squared });
                    }
                }
            }
        });
        heaps.apply(&buckets, rows_per_owner);
        group_start = group_end;
    }
    // Rows that no leaf gave a full list (small leaves) are topped up with the rows that
    // follow a random start.
    let mut random = SeededRandom::new(search.seed ^ 0x5851_f42d_4c95_7f2d);
    for query in 0..rows {
        let base = query * capacity;
        let mut candidate = random.next_below(rows);
        while heaps.indices[base + capacity - 1] == u32::MAX {
            if candidate != query {
                let squared = distance(query as u32, candidate as u32);
                offer_to_row(
                    &mut heaps.distances[base..base + capacity],
                    &mut heaps.indices[base..base + capacity],
                    &mut heaps.fresh[base..base + capacity],
                    squared,
                    candidate as u32,
                );
            }
            candidate = (candidate + 1) % rows;
        }
    }

    // 2. NN-descent rounds.
    let max_candidates = search.max_candidates.max(1);
    for _round in 0..search.max_iterations {
        // Candidates: each row's new and old neighbours and the rows that list it, at most
        // `max_candidates` of each (in row order, so deterministic).
        let mut new_candidates: Vec<Vec<u32>> = vec![Vec::new(); rows];
        let mut old_candidates: Vec<Vec<u32>> = vec![Vec::new(); rows];
        for query in 0..rows {
            for slot in query * capacity..(query + 1) * capacity {
                let neighbor = heaps.indices[slot];
                if neighbor == u32::MAX {
                    continue;
                }
                if heaps.fresh[slot] {
                    if new_candidates[query].len() < max_candidates {
                        new_candidates[query].push(neighbor);
                        heaps.fresh[slot] = false;
                    }
                    if new_candidates[neighbor as usize].len() < max_candidates {
                        new_candidates[neighbor as usize].push(query as u32);
                    }
                } else {
                    if old_candidates[query].len() < max_candidates {
                        old_candidates[query].push(neighbor);
                    }
                    if old_candidates[neighbor as usize].len() < max_candidates {
                        old_candidates[neighbor as usize].push(query as u32);
                    }
                }
            }
        }
        let heaps_view = &heaps;
        let new_candidates = &new_candidates;
        let old_candidates = &old_candidates;
        let buckets = produce_proposals(rows, workers, rows_per_owner, |first, last, emit| {
            for query in first..last {
                let fresh = &new_candidates[query];
                let old = &old_candidates[query];
                for (position, &left) in fresh.iter().enumerate() {
                    for &right in fresh[position + 1..].iter().chain(old.iter()) {
                        if left == right {
                            continue;
                        }
                        let squared = distance(left, right);
                        if squared < heaps_view.worst(left) {
                            emit(Proposal { row: left, candidate: right, distance: squared });
                        }
                        if squared < heaps_view.worst(right) {
                            emit(Proposal { row: right, candidate: left, distance: squared });
                        }
                    }
                }
            }
        });
        let changed = heaps.apply(&buckets, rows_per_owner);
        if (changed as f64) <= 0.001 * (rows * capacity) as f64 {
            break;
        }
    }

    // Exact distances for the lists (they were ranked through the norms), on every core.
    let mut indices = vec![0u32; rows * k];
    let mut distances = vec![0.0f32; rows * k];
    std::thread::scope(|scope| {
        for (chunk, (index_chunk, distance_chunk)) in
            indices.chunks_mut(rows_per_owner * k).zip(distances.chunks_mut(rows_per_owner * k)).enumerate()
        {
            let heaps = &heaps;
            scope.spawn(move || {
                let mut exact: Vec<(f32, u32)> = Vec::with_capacity(capacity);
                for (local, (index_row, distance_row)) in
                    index_chunk.chunks_mut(k).zip(distance_chunk.chunks_mut(k)).enumerate()
                {
                    let query = chunk * rows_per_owner + local;
                    exact.clear();
                    exact.extend(
                        heaps.indices[query * capacity..(query + 1) * capacity].iter().map(|candidate| {
                            (squared_euclidean(row(query as u32), row(*candidate)).sqrt(), *candidate)
                        }),
                    );
                    exact.sort_by(|left, right| left.0.total_cmp(&right.0).then(left.1.cmp(&right.1)));
                    index_row[0] = query as u32;
                    distance_row[0] = 0.0;
                    for (position, (distance, candidate)) in exact.iter().enumerate() {
                        index_row[position + 1] = *candidate;
                        distance_row[position + 1] = *distance;
                    }
                }
            });
        }
    });
    NeighborLists { k, indices, distances }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_matrix(rows: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut random = SeededRandom::new(seed);
        (0..rows * dims).map(|_| random.next_normal() as f32).collect()
    }

    fn naive_knn(values: &[f32], dims: usize, k: usize) -> Vec<Vec<u32>> {
        let rows = values.len() / dims;
        (0..rows)
            .map(|query| {
                let mut all: Vec<(f32, u32)> = (0..rows)
                    .filter(|other| *other != query)
                    .map(|other| {
                        (
                            squared_euclidean(&values[query * dims..][..dims], &values[other * dims..][..dims]),
                            other as u32,
                        )
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                std::iter::once(query as u32).chain(all.iter().take(k - 1).map(|entry| entry.1)).collect()
            })
            .collect()
    }

    #[test]
    fn brute_force_and_kd_tree_match_a_naive_search() {
        for dims in [3usize, 40] {
            let values = random_matrix(300, dims, dims as u64);
            let expected = naive_knn(&values, dims, 6);
            let found = exact_knn(&values, dims, 6);
            for query in 0..300 {
                assert_eq!(found.row_indices(query), expected[query].as_slice(), "dims {dims} row {query}");
                assert!(found.row_distances(query).windows(2).all(|pair| pair[0] <= pair[1]));
            }
        }
    }

    #[test]
    fn nn_descent_finds_most_true_neighbours() {
        let values = random_matrix(1500, 8, 5);
        let expected = naive_knn(&values, 8, 10);
        let found = approximate_knn(&values, 8, 10, &ApproximateSearch::for_rows(1500, 10, 3));
        let mut hits = 0;
        for query in 0..1500 {
            hits += found.row_indices(query).iter().filter(|index| expected[query].contains(index)).count();
        }
        let recall = hits as f64 / (1500.0 * 10.0);
        assert!(recall > 0.95, "recall {recall}");
    }

    fn recall(found: &NeighborLists, expected: &[Vec<u32>]) -> f64 {
        let hits: usize = expected
            .iter()
            .enumerate()
            .map(|(query, truth)| found.row_indices(query).iter().filter(|index| truth.contains(index)).count())
            .sum();
        hits as f64 / (expected.len() * found.k) as f64
    }

    #[test]
    fn the_approximate_search_recalls_nine_tenths_of_the_exact_15_neighbours() {
        // Gaussian noise in 24 dimensions (no structure to exploit: the hard case) and blobs in
        // 128, and in 512 (wider than the sketch the trees are then built on).
        for (rows, dims, seed) in [(2500usize, 24usize, 11u64), (2000, 128, 12), (2000, 512, 13)] {
            assert_eq!(sketch_for_trees(&vec![0.0; dims], dims, seed).is_some(), dims == 512);
            let mut values = random_matrix(rows, dims, seed);
            if dims >= 128 {
                for (index, value) in values.iter_mut().enumerate() {
                    *value += ((index / dims) % 10) as f32 * 0.7 * ((index % dims) as f32).sin();
                }
            }
            let expected = exact_knn(&values, dims, 15);
            let expected: Vec<Vec<u32>> = (0..rows).map(|query| expected.row_indices(query).to_vec()).collect();
            let found = approximate_knn(&values, dims, 15, &ApproximateSearch::for_rows(rows, 15, seed));
            let recall = recall(&found, &expected);
            eprintln!("{rows} x {dims}: recall@15 {recall:.4}");
            assert!(recall > 0.9, "{rows} x {dims}: recall@15 {recall}");
            for query in 0..rows {
                assert_eq!(found.row_indices(query)[0], query as u32);
                assert!(found.row_distances(query).windows(2).all(|pair| pair[0] <= pair[1]));
                let mut unique = found.row_indices(query).to_vec();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), 15, "row {query} lists a neighbour twice");
            }
        }
    }

    #[test]
    fn the_approximate_search_gives_the_same_lists_for_the_same_seed() {
        let values = random_matrix(900, 10, 4);
        let search = ApproximateSearch::for_rows(900, 8, 9);
        let first = approximate_knn(&values, 10, 8, &search);
        let second = approximate_knn(&values, 10, 8, &search);
        assert_eq!(first.indices, second.indices);
        assert_eq!(first.distances, second.distances);
    }

    #[test]
    fn joining_the_forest_s_leaves_in_groups_gives_the_same_lists() {
        let values = random_matrix(1200, 12, 6);
        let whole = ApproximateSearch { leaf_pairs_per_group: usize::MAX, ..ApproximateSearch::for_rows(1200, 10, 5) };
        let grouped = ApproximateSearch { leaf_pairs_per_group: 50, ..whole };
        let one_leaf_at_a_time = ApproximateSearch { leaf_pairs_per_group: 1, ..whole };
        let expected = approximate_knn(&values, 12, 10, &whole);
        for search in [grouped, one_leaf_at_a_time] {
            let found = approximate_knn(&values, 12, 10, &search);
            assert_eq!(found.indices, expected.indices);
            assert_eq!(found.distances, expected.distances);
        }
    }

    #[test]
    fn the_approximate_search_copes_with_duplicate_rows() {
        let mut values = vec![1.0f32; 300 * 6];
        values.extend(random_matrix(100, 6, 2));
        let found = approximate_knn(&values, 6, 10, &ApproximateSearch::for_rows(400, 10, 1));
        assert_eq!(found.rows(), 400);
        assert!(found.indices.iter().all(|index| (*index as usize) < 400));
    }

    #[test]
    fn distances_are_the_same_to_the_bit_on_every_instruction_set() {
        let values = random_matrix(2, 1283, 7);
        let (left, right) = values.split_at(1283);
        assert_eq!(squared_euclidean(left, right).to_bits(), squared_euclidean_portable(left, right).to_bits());
        assert_eq!(dot(left, right).to_bits(), dot_portable(left, right).to_bits());
    }

    #[test]
    fn k_is_capped_at_the_row_count() {
        let values = random_matrix(3, 2, 1);
        let found = exact_knn(&values, 2, 10);
        assert_eq!(found.k, 3);
        assert_eq!(found.row_indices(1)[0], 1);
    }
}
