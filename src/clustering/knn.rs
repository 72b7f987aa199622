//! k-nearest-neighbour searches: exact brute force (blocked matrix product, for any
//! dimension), an exact KD-tree (for the low-dimensional reduced space), and NN-descent
//! (approximate, for large high-dimensional sets). Every list includes the point itself
//! first (distance 0), as umap-learn's and scikit-learn's do.

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

#[inline]
pub fn squared_euclidean(left: &[f32], right: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise.
    let mut sums = [0.0f32; 8];
    let chunks = left.len() / 8;
    for chunk in 0..chunks {
        let base = chunk * 8;
        for lane in 0..8 {
            let difference = left[base + lane] - right[base + lane];
            sums[lane] += difference * difference;
        }
    }
    let mut total: f32 = sums.iter().sum();
    for index in chunks * 8..left.len() {
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

/// Approximate kNN by NN-descent (Dong, Moses & Li 2011) from a random start, single
/// threaded and seeded. `k` is capped at the number of rows.
pub fn nn_descent(values: &[f32], dims: usize, k: usize, seed: u64, max_iterations: usize) -> NeighborLists {
    let rows = values.len() / dims.max(1);
    let k = k.min(rows);
    if rows <= 1 || k <= 1 {
        return exact_knn(values, dims, k);
    }
    let neighbors_wanted = k - 1; // excluding self
    let row = |index: usize| &values[index * dims..(index + 1) * dims];
    let mut random = SeededRandom::new(seed);
    // Per row: sorted (distance squared, index, is_new).
    let mut lists: Vec<Vec<(f32, u32, bool)>> = Vec::with_capacity(rows);
    for query in 0..rows {
        let mut list: Vec<(f32, u32, bool)> = Vec::with_capacity(neighbors_wanted + 1);
        while list.len() < neighbors_wanted {
            let candidate = random.next_below(rows);
            if candidate == query || list.iter().any(|entry| entry.1 as usize == candidate) {
                continue;
            }
            list.push((squared_euclidean(row(query), row(candidate)), candidate as u32, true));
        }
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        lists.push(list);
    }
    fn try_insert(list: &mut Vec<(f32, u32, bool)>, capacity: usize, distance: f32, index: u32) -> bool {
        if list.len() >= capacity && distance >= list[list.len() - 1].0 {
            return false;
        }
        if list.iter().any(|entry| entry.1 == index) {
            return false;
        }
        let position = list.partition_point(|entry| (entry.0, entry.1) <= (distance, index));
        list.insert(position, (distance, index, true));
        if list.len() > capacity {
            list.pop();
        }
        true
    }
    let max_candidates = neighbors_wanted.clamp(1, 50);
    for _iteration in 0..max_iterations {
        let mut new_candidates: Vec<Vec<u32>> = vec![Vec::new(); rows];
        let mut old_candidates: Vec<Vec<u32>> = vec![Vec::new(); rows];
        for query in 0..rows {
            for entry in lists[query].iter_mut() {
                let neighbor = entry.1 as usize;
                if entry.2 {
                    if new_candidates[query].len() < max_candidates {
                        new_candidates[query].push(entry.1);
                        entry.2 = false;
                    }
                    if new_candidates[neighbor].len() < max_candidates {
                        new_candidates[neighbor].push(query as u32);
                    }
                } else {
                    if old_candidates[query].len() < max_candidates {
                        old_candidates[query].push(entry.1);
                    }
                    if old_candidates[neighbor].len() < max_candidates {
                        old_candidates[neighbor].push(query as u32);
                    }
                }
            }
        }
        // Local join: distances of candidate pairs are computed in parallel, block by block,
        // then offered to the lists sequentially in a fixed order, so the result does not
        // depend on the thread count.
        let mut updates = 0usize;
        const JOIN_BLOCK: usize = 2048;
        let workers = worker_count();
        let mut block_start = 0;
        while block_start < rows {
            let block_end = (block_start + JOIN_BLOCK).min(rows);
            let per_worker = (block_end - block_start).div_ceil(workers);
            let pair_lists: Vec<Vec<(u32, u32, f32)>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|worker| {
                        let new_candidates = &new_candidates;
                        let old_candidates = &old_candidates;
                        scope.spawn(move || {
                            let start = (block_start + worker * per_worker).min(block_end);
                            let end = (start + per_worker).min(block_end);
                            let mut pairs = Vec::new();
                            for query in start..end {
                                let fresh = &new_candidates[query];
                                let old = &old_candidates[query];
                                for (position, &first) in fresh.iter().enumerate() {
                                    for &second in fresh[position + 1..].iter().chain(old.iter()) {
                                        if first != second {
                                            let distance = squared_euclidean(row(first as usize), row(second as usize));
                                            pairs.push((first, second, distance));
                                        }
                                    }
                                }
                            }
                            pairs
                        })
                    })
                    .collect();
                handles.into_iter().map(|handle| handle.join().unwrap_or_default()).collect()
            });
            for pairs in pair_lists {
                for (first, second, distance) in pairs {
                    if try_insert(&mut lists[first as usize], neighbors_wanted, distance, second) {
                        updates += 1;
                    }
                    if try_insert(&mut lists[second as usize], neighbors_wanted, distance, first) {
                        updates += 1;
                    }
                }
            }
            block_start = block_end;
        }
        if (updates as f64) <= 0.001 * (rows * neighbors_wanted) as f64 {
            break;
        }
    }
    let mut indices = Vec::with_capacity(rows * k);
    let mut distances = Vec::with_capacity(rows * k);
    for (query, list) in lists.iter().enumerate() {
        indices.push(query as u32);
        distances.push(0.0);
        for entry in list {
            indices.push(entry.1);
            distances.push(entry.0.sqrt());
        }
    }
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
        let found = nn_descent(&values, 8, 10, 3, 20);
        let mut hits = 0;
        for query in 0..1500 {
            hits += found.row_indices(query).iter().filter(|index| expected[query].contains(index)).count();
        }
        let recall = hits as f64 / (1500.0 * 10.0);
        assert!(recall > 0.95, "recall {recall}");
    }

    #[test]
    fn k_is_capped_at_the_row_count() {
        let values = random_matrix(3, 2, 1);
        let found = exact_knn(&values, 2, 10);
        assert_eq!(found.k, 3);
        assert_eq!(found.row_indices(1)[0], 1);
    }
}
