//! HDBSCAN (Campello, Moulavi & Sander 2013), following scikit-learn's `HDBSCAN`:
//! core distances from an exact kNN (KD-tree in low dimensions; `min_samples` counts the
//! point itself), a minimum spanning tree of the mutual-reachability graph (Prim's algorithm
//! up to 20 000 rows or above 16 dimensions; KD-tree Boruvka otherwise), single-linkage
//! hierarchy, condensed
//! tree, stability, excess-of-mass or leaf selection, and membership probabilities as
//! scikit-learn computes them. Noise is -1; `allow_single_cluster` is false, as in
//! scikit-learn's default.

use super::knn::{exact_knn, squared_euclidean, KdTree};
use super::parameters::{ClusterSelection, DistanceMetric, HdbscanParameters};
use super::reduce::rows_for_metric;

#[derive(Debug, Clone, PartialEq)]
pub struct HdbscanOutput {
    pub labels: Vec<i64>,
    pub probabilities: Vec<f32>,
}

/// One edge of the minimum spanning tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeEdge {
    pub from: usize,
    pub to: usize,
    pub weight: f64,
}

/// One row of the condensed tree (points are `0..n`, clusters `n..`, the root is `n`).
#[derive(Debug, Clone, Copy)]
pub struct CondensedRow {
    pub parent: usize,
    pub child: usize,
    pub lambda: f64,
    pub child_size: usize,
}

/// Runs HDBSCAN. Fewer rows than `min_cluster_size` (or fewer than 2) make everything noise.
pub fn hdbscan(values: &[f32], dims: usize, parameters: &HdbscanParameters) -> HdbscanOutput {
    let rows = values.len() / dims.max(1);
    let all_noise = HdbscanOutput { labels: vec![-1; rows], probabilities: vec![0.0; rows] };
    if rows < 2 || rows < parameters.min_cluster_size || dims == 0 {
        return all_noise;
    }
    let rows_in_metric = rows_for_metric(values, dims, parameters.metric);
    let data: &[f32] = &rows_in_metric;
    let min_samples = parameters.effective_min_samples().clamp(1, rows);
    let neighbors = exact_knn(data, dims, min_samples);
    let core_distances: Vec<f32> = (0..rows).map(|row| neighbors.row_distances(row)[min_samples - 1]).collect();
    drop(neighbors);
    let mut edges = if dims <= BORUVKA_MAX_DIMS && rows > PRIM_MAX_ROWS {
        boruvka_minimum_spanning_tree(data, dims, &core_distances)
    } else {
        prim_minimum_spanning_tree(data, dims, &core_distances)
    };
    if parameters.metric == DistanceMetric::Cosine {
        // Mutual reachability commutes with the monotone map d -> d^2 / 2 (Euclidean between
        // unit vectors to cosine distance), so the tree is the same and only weights change.
        edges.iter_mut().for_each(|edge| edge.weight = edge.weight * edge.weight / 2.0);
    }
    let hierarchy = single_linkage(rows, &mut edges);
    let condensed = condense_tree(&hierarchy, rows, parameters.min_cluster_size);
    label_condensed_tree(&condensed, rows, parameters.cluster_selection)
}

/// Up to this many dimensions, and above `PRIM_MAX_ROWS` rows, the minimum spanning tree
/// comes from KD-tree Boruvka; otherwise from Prim's algorithm (KD-trees stop pruning in high
/// dimensions).
pub const BORUVKA_MAX_DIMS: usize = 16;

/// Up to this many rows Prim's algorithm builds the tree even in low dimensions: it adds
/// edges in the same order as scikit-learn, which decides how equal mutual-reachability
/// weights (ties) are merged and so reproduces its labels and probabilities most closely
/// (Boruvka gives a tree of the same total weight, but may break ties differently).
pub const PRIM_MAX_ROWS: usize = 20_000;

/// Total order of candidate edges: weight, then the smaller and larger endpoint.
type EdgeKey = (f32, u32, u32);

fn edge_key(weight: f32, first: u32, second: u32) -> EdgeKey {
    (weight, first.min(second), first.max(second))
}

fn key_less(left: &EdgeKey, right: &EdgeKey) -> bool {
    (left.0, left.1, left.2) < (right.0, right.1, right.2)
}

/// Boruvka's algorithm on mutual reachability with a KD-tree: every round, each component
/// finds its lightest edge to another component (nodes whose points all share the query's
/// component, or whose lower bound `max(core[q], min core in node, box distance)` exceeds the
/// component's best so far, are skipped). Edges are totally ordered (weight, endpoints), so
/// the tree is deterministic and independent of the thread count.
pub fn boruvka_minimum_spanning_tree(values: &[f32], dims: usize, core_distances: &[f32]) -> Vec<TreeEdge> {
    let rows = core_distances.len();
    let mut edges = Vec::with_capacity(rows.saturating_sub(1));
    if rows < 2 {
        return edges;
    }
    let tree = KdTree::build(values, dims);
    let node_count = tree.nodes.len();
    let mut node_min_core = vec![f32::INFINITY; node_count];
    for node in (0..node_count).rev() {
        let kd = &tree.nodes[node];
        node_min_core[node] = if kd.left == usize::MAX {
            tree.order[kd.start..kd.end].iter().map(|row| core_distances[*row as usize]).fold(f32::INFINITY, f32::min)
        } else {
            node_min_core[kd.left].min(node_min_core[kd.right])
        };
    }
    let mut parent: Vec<u32> = (0..rows as u32).collect();
    fn find(parent: &mut [u32], mut node: u32) -> u32 {
        while parent[node as usize] != node {
            let grand = parent[parent[node as usize] as usize];
            parent[node as usize] = grand;
            node = grand;
        }
        node
    }
    let mut component = vec![0u32; rows];
    let mut node_component = vec![u32::MAX; node_count];
    let workers = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1).clamp(1, 8);
    while edges.len() < rows - 1 {
        for row in 0..rows {
            component[row] = find(&mut parent, row as u32);
        }
        for node in (0..node_count).rev() {
            let kd = &tree.nodes[node];
            node_component[node] = if kd.left == usize::MAX {
                let first = component[tree.order[kd.start] as usize];
                if tree.order[kd.start..kd.end].iter().all(|row| component[*row as usize] == first) {
                    first
                } else {
                    u32::MAX
                }
            } else if node_component[kd.left] == node_component[kd.right] {
                node_component[kd.left]
            } else {
                u32::MAX
            };
        }
        let per_worker = rows.div_ceil(workers);
        let partial: Vec<Vec<EdgeKey>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|worker| {
                    let tree = &tree;
                    let component = &component;
                    let node_component = &node_component;
                    let node_min_core = &node_min_core;
                    scope.spawn(move || {
                        let mut best = vec![(f32::INFINITY, u32::MAX, u32::MAX); rows];
                        let start = (worker * per_worker).min(rows);
                        let end = (start + per_worker).min(rows);
                        let mut stack = Vec::new();
                        for query in start..end {
                            let own = component[query];
                            let core_query = core_distances[query];
                            if core_query > best[own as usize].0 {
                                continue;
                            }
                            let query_row = &values[query * dims..(query + 1) * dims];
                            stack.clear();
                            stack.push(0usize);
                            while let Some(node) = stack.pop() {
                                if node_component[node] == own {
                                    continue;
                                }
                                let kd = &tree.nodes[node];
                                let bound = core_query
                                    .max(node_min_core[node])
                                    .max(tree.box_distance_squared(kd, query_row).sqrt());
                                if bound > best[own as usize].0 {
                                    continue;
                                }
                                if kd.left == usize::MAX {
                                    for &other in &tree.order[kd.start..kd.end] {
                                        if component[other as usize] == own {
                                            continue;
                                        }
                                        let floor = core_query.max(core_distances[other as usize]);
                                        if floor > best[own as usize].0 {
                                            continue;
                                        }
                                        let distance = squared_euclidean(query_row, tree.row(other)).sqrt();
                                        let key = edge_key(floor.max(distance), query as u32, other);
                                        if key_less(&key, &best[own as usize]) {
                                            best[own as usize] = key;
                                        }
                                    }
                                } else {
                                    let left_gap = tree.box_distance_squared(&tree.nodes[kd.left], query_row);
                                    let right_gap = tree.box_distance_squared(&tree.nodes[kd.right], query_row);
                                    // Visit the nearer child first (pushed last).
                                    if left_gap <= right_gap {
                                        stack.push(kd.right);
                                        stack.push(kd.left);
                                    } else {
                                        stack.push(kd.left);
                                        stack.push(kd.right);
                                    }
                                }
                            }
                        }
                        best
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap_or_default()).collect()
        });
        let mut chosen: Vec<EdgeKey> = Vec::new();
        for row in 0..rows {
            if component[row] as usize != row {
                continue;
            }
            let mut best = (f32::INFINITY, u32::MAX, u32::MAX);
            for worker_best in &partial {
                if let Some(candidate) = worker_best.get(row) {
                    if key_less(candidate, &best) {
                        best = *candidate;
                    }
                }
            }
            if best.1 != u32::MAX {
                chosen.push(best);
            }
        }
        if chosen.is_empty() {
            break;
        }
        chosen.sort_by(|left, right| {
            (left.0, left.1, left.2).partial_cmp(&(right.0, right.1, right.2)).unwrap_or(std::cmp::Ordering::Equal)
        });
        for (weight, first, second) in chosen {
            let (root_first, root_second) = (find(&mut parent, first), find(&mut parent, second));
            if root_first != root_second {
                parent[root_first as usize] = root_second;
                edges.push(TreeEdge { from: first as usize, to: second as usize, weight: weight as f64 });
            }
        }
    }
    edges
}

/// Prim's algorithm on mutual reachability `max(core[a], core[b], d(a, b))`.
pub fn prim_minimum_spanning_tree(values: &[f32], dims: usize, core_distances: &[f32]) -> Vec<TreeEdge> {
    let rows = core_distances.len();
    let mut edges = Vec::with_capacity(rows.saturating_sub(1));
    if rows < 2 {
        return edges;
    }
    // Remaining points, with their best distance to the tree and where it comes from.
    let mut remaining: Vec<u32> = (1..rows as u32).collect();
    let mut best: Vec<f32> = vec![f32::INFINITY; rows - 1];
    let mut source: Vec<u32> = vec![0; rows - 1];
    // Copies in remaining-order keep the scan contiguous.
    let mut coordinates: Vec<f32> = values[dims..].to_vec();
    let mut cores: Vec<f32> = core_distances[1..].to_vec();
    let mut current = 0usize;
    let workers = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1).min(2);
    while !remaining.is_empty() {
        let current_row = &values[current * dims..(current + 1) * dims];
        let current_core = core_distances[current];
        let count = remaining.len();
        let scan = |start: usize, best: &mut [f32], source: &mut [u32]| -> (f32, u32, usize) {
            let mut chosen = (f32::INFINITY, u32::MAX, usize::MAX);
            for local in 0..best.len() {
                let position = start + local;
                let floor = current_core.max(cores[position]);
                if floor < best[local] {
                    let distance =
                        squared_euclidean(current_row, &coordinates[position * dims..(position + 1) * dims]).sqrt();
                    let reachability = floor.max(distance);
                    if reachability < best[local] {
                        best[local] = reachability;
                        source[local] = current as u32;
                    }
                }
                let key = (best[local], remaining[position]);
                if key < (chosen.0, chosen.1) {
                    chosen = (key.0, key.1, position);
                }
            }
            chosen
        };
        let chosen = if workers > 1 && count >= 20_000 {
            let half = count / 2;
            let (best_left, best_right) = best.split_at_mut(half);
            let (source_left, source_right) = source.split_at_mut(half);
            let (left, right) = std::thread::scope(|scope| {
                let handle = scope.spawn(|| scan(half, best_right, source_right));
                let left = scan(0, best_left, source_left);
                (left, handle.join().unwrap_or((f32::INFINITY, u32::MAX, usize::MAX)))
            });
            if (right.0, right.1) < (left.0, left.1) {
                right
            } else {
                left
            }
        } else {
            scan(0, &mut best, &mut source)
        };
        let position = chosen.2;
        let next = remaining[position] as usize;
        edges.push(TreeEdge { from: source[position] as usize, to: next, weight: best[position] as f64 });
        // Remove `position` by moving the last entry into it.
        let last = count - 1;
        remaining.swap(position, last);
        best.swap(position, last);
        source.swap(position, last);
        cores.swap(position, last);
        if position != last {
            let (head, tail) = coordinates.split_at_mut(last * dims);
            head[position * dims..(position + 1) * dims].copy_from_slice(&tail[..dims]);
        }
        remaining.pop();
        best.pop();
        source.pop();
        cores.pop();
        coordinates.truncate(last * dims);
        current = next;
    }
    edges
}

/// Single-linkage merges `(left, right, distance, size)`; node `n + i` is merge `i`.
pub fn single_linkage(rows: usize, edges: &mut [TreeEdge]) -> Vec<(usize, usize, f64, usize)> {
    edges.sort_by(|left, right| left.weight.total_cmp(&right.weight));
    let mut parent: Vec<usize> = (0..2 * rows).collect();
    let mut size: Vec<usize> = vec![1; 2 * rows];
    fn find(parent: &mut [usize], mut node: usize) -> usize {
        let mut root = node;
        while parent[root] != root {
            root = parent[root];
        }
        while parent[node] != root {
            let next = parent[node];
            parent[node] = root;
            node = next;
        }
        root
    }
    let mut hierarchy = Vec::with_capacity(edges.len());
    for (index, edge) in edges.iter().enumerate() {
        let left = find(&mut parent, edge.from);
        let right = find(&mut parent, edge.to);
        let merged = rows + index;
        let merged_size = size[left] + size[right];
        hierarchy.push((left, right, edge.weight, merged_size));
        parent[left] = merged;
        parent[right] = merged;
        size[merged] = merged_size;
    }
    hierarchy
}

/// The condensed tree of scikit-learn's `_condense_tree`.
pub fn condense_tree(
    hierarchy: &[(usize, usize, f64, usize)],
    rows: usize,
    min_cluster_size: usize,
) -> Vec<CondensedRow> {
    let mut result = Vec::with_capacity(rows * 2);
    if hierarchy.is_empty() {
        return result;
    }
    let root = 2 * rows - 2;
    let node_size = |node: usize| if node < rows { 1 } else { hierarchy[node - rows].3 };
    let mut relabel = vec![0usize; 2 * rows - 1];
    relabel[root] = rows;
    let mut next_label = rows + 1;
    let mut ignore = vec![false; 2 * rows - 1];
    // Breadth-first order from the root.
    let mut order = vec![root];
    let mut cursor = 0;
    while cursor < order.len() {
        let node = order[cursor];
        cursor += 1;
        if node >= rows {
            let (left, right, _, _) = hierarchy[node - rows];
            order.push(left);
            order.push(right);
        }
    }
    let mut stack = Vec::new();
    let mut fall_out =
        |start: usize, parent_label: usize, lambda: f64, ignore: &mut Vec<bool>, result: &mut Vec<CondensedRow>| {
            stack.clear();
            stack.push(start);
            while let Some(node) = stack.pop() {
                ignore[node] = true;
                if node < rows {
                    result.push(CondensedRow { parent: parent_label, child: node, lambda, child_size: 1 });
                } else {
                    let (left, right, _, _) = hierarchy[node - rows];
                    stack.push(right);
                    stack.push(left);
                }
            }
        };
    for node in order {
        if ignore[node] || node < rows {
            continue;
        }
        let (left, right, distance, _) = hierarchy[node - rows];
        let lambda = if distance > 0.0 { 1.0 / distance } else { f64::INFINITY };
        let left_count = node_size(left);
        let right_count = node_size(right);
        let parent_label = relabel[node];
        if left_count >= min_cluster_size && right_count >= min_cluster_size {
            relabel[left] = next_label;
            next_label += 1;
            result.push(CondensedRow { parent: parent_label, child: relabel[left], lambda, child_size: left_count });
            relabel[right] = next_label;
            next_label += 1;
            result.push(CondensedRow { parent: parent_label, child: relabel[right], lambda, child_size: right_count });
        } else if left_count < min_cluster_size && right_count < min_cluster_size {
            fall_out(left, parent_label, lambda, &mut ignore, &mut result);
            fall_out(right, parent_label, lambda, &mut ignore, &mut result);
        } else if left_count < min_cluster_size {
            relabel[right] = parent_label;
            fall_out(left, parent_label, lambda, &mut ignore, &mut result);
        } else {
            relabel[left] = parent_label;
            fall_out(right, parent_label, lambda, &mut ignore, &mut result);
        }
    }
    result
}

/// Selects clusters from a condensed tree and labels the points (scikit-learn's
/// `_get_clusters` with `allow_single_cluster=False`, epsilon 0, no size cap).
pub fn label_condensed_tree(condensed: &[CondensedRow], rows: usize, selection: ClusterSelection) -> HdbscanOutput {
    let mut output = HdbscanOutput { labels: vec![-1; rows], probabilities: vec![0.0; rows] };
    if condensed.is_empty() {
        return output;
    }
    let root = rows;
    let cluster_count = condensed.iter().map(|row| row.parent.max(row.child)).max().unwrap_or(root) + 1 - root;
    let slot = |cluster: usize| cluster - root;
    let mut births = vec![0.0f64; cluster_count];
    let mut cluster_parent = vec![usize::MAX; cluster_count];
    let mut cluster_children: Vec<Vec<usize>> = vec![Vec::new(); cluster_count];
    let mut deaths = vec![0.0f64; cluster_count];
    for row in condensed {
        if row.child >= root {
            births[slot(row.child)] = row.lambda;
            cluster_parent[slot(row.child)] = row.parent;
            cluster_children[slot(row.parent)].push(row.child);
        }
    }
    // scikit-learn's `max_lambdas` keeps, for each parent, the largest lambda of the *last
    // contiguous run* of its rows in condensed-tree order (rows of one parent are not always
    // contiguous). Probabilities depend on it, so we reproduce it exactly; our rows come in
    // the same breadth-first order as scikit-learn's.
    let mut run_parent = condensed[0].parent;
    let mut run_max = condensed[0].lambda;
    for row in &condensed[1..] {
        if row.parent == run_parent {
            run_max = run_max.max(row.lambda);
        } else {
            deaths[slot(run_parent)] = run_max;
            run_parent = row.parent;
            run_max = row.lambda;
        }
    }
    deaths[slot(run_parent)] = run_max;
    let mut stability = vec![0.0f64; cluster_count];
    for row in condensed {
        stability[slot(row.parent)] += (row.lambda - births[slot(row.parent)]) * row.child_size as f64;
    }
    let mut selected = vec![false; cluster_count];
    match selection {
        ClusterSelection::Eom => {
            for cluster in (root + 1..root + cluster_count).rev() {
                selected[slot(cluster)] = true;
            }
            for cluster in (root + 1..root + cluster_count).rev() {
                let subtree: f64 = cluster_children[slot(cluster)].iter().map(|child| stability[slot(*child)]).sum();
                if subtree > stability[slot(cluster)] {
                    selected[slot(cluster)] = false;
                    stability[slot(cluster)] = subtree;
                } else {
                    let mut stack: Vec<usize> = cluster_children[slot(cluster)].clone();
                    while let Some(descendant) = stack.pop() {
                        selected[slot(descendant)] = false;
                        stack.extend(cluster_children[slot(descendant)].iter().copied());
                    }
                }
            }
        }
        ClusterSelection::Leaf => {
            for cluster in root + 1..root + cluster_count {
                selected[slot(cluster)] = cluster_children[slot(cluster)].is_empty();
            }
        }
    }
    // Nearest selected ancestor-or-self of every cluster (clusters are numbered top-down).
    let mut owner = vec![usize::MAX; cluster_count];
    for cluster in root + 1..root + cluster_count {
        owner[slot(cluster)] = if selected[slot(cluster)] {
            cluster
        } else {
            let parent = cluster_parent[slot(cluster)];
            if parent == usize::MAX {
                usize::MAX
            } else {
                owner[slot(parent)]
            }
        };
    }
    let mut label_of_cluster = vec![-1i64; cluster_count];
    let mut next_label = 0i64;
    for cluster in root + 1..root + cluster_count {
        if selected[slot(cluster)] {
            label_of_cluster[slot(cluster)] = next_label;
            next_label += 1;
        }
    }
    for row in condensed {
        if row.child >= root {
            continue;
        }
        let cluster = owner[slot(row.parent)];
        if cluster == usize::MAX {
            continue;
        }
        output.labels[row.child] = label_of_cluster[slot(cluster)];
        let max_lambda = deaths[slot(cluster)];
        output.probabilities[row.child] = if max_lambda == 0.0 || !row.lambda.is_finite() {
            1.0
        } else {
            (row.lambda.min(max_lambda) / max_lambda) as f32
        };
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clustering::random::SeededRandom;

    fn blobs(centres: &[[f32; 2]], per_blob: usize, spread: f64, seed: u64) -> (Vec<f32>, Vec<i64>) {
        let mut random = SeededRandom::new(seed);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for (label, centre) in centres.iter().enumerate() {
            for _ in 0..per_blob {
                values.push(centre[0] + (random.next_normal() * spread) as f32);
                values.push(centre[1] + (random.next_normal() * spread) as f32);
                labels.push(label as i64);
            }
        }
        (values, labels)
    }

    #[test]
    fn prim_matches_a_naive_minimum_spanning_tree_weight() {
        let (values, _) = blobs(&[[0.0, 0.0], [5.0, 5.0]], 40, 1.0, 3);
        let core: Vec<f32> = vec![0.3; 80];
        let edges = prim_minimum_spanning_tree(&values, 2, &core);
        assert_eq!(edges.len(), 79);
        // Kruskal on all pairs.
        let mut all = Vec::new();
        for a in 0..80 {
            for b in a + 1..80 {
                let distance = squared_euclidean(&values[a * 2..a * 2 + 2], &values[b * 2..b * 2 + 2]).sqrt();
                all.push((distance.max(0.3) as f64, a, b));
            }
        }
        all.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut component: Vec<usize> = (0..80).collect();
        let mut total = 0.0;
        for (weight, a, b) in all {
            let (ca, cb) = (component[a], component[b]);
            if ca != cb {
                total += weight;
                component.iter_mut().for_each(|value| {
                    if *value == cb {
                        *value = ca
                    }
                });
            }
        }
        let prim_total: f64 = edges.iter().map(|edge| edge.weight).sum();
        assert!((prim_total - total).abs() < 1e-4, "{prim_total} vs {total}");
        let boruvka = boruvka_minimum_spanning_tree(&values, 2, &core);
        assert_eq!(boruvka.len(), 79);
        let boruvka_total: f64 = boruvka.iter().map(|edge| edge.weight).sum();
        assert!((boruvka_total - total).abs() < 1e-4, "{boruvka_total} vs {total}");
    }

    #[test]
    fn boruvka_and_prim_agree_on_weights_with_real_core_distances() {
        let (values, _) = blobs(&[[0.0, 0.0], [4.0, 4.0], [9.0, 0.0]], 120, 1.2, 21);
        let rows = values.len() / 2;
        let neighbors = exact_knn(&values, 2, 5);
        let core: Vec<f32> = (0..rows).map(|row| neighbors.row_distances(row)[4]).collect();
        let mut prim: Vec<f64> = prim_minimum_spanning_tree(&values, 2, &core).iter().map(|e| e.weight).collect();
        let mut boruvka: Vec<f64> = boruvka_minimum_spanning_tree(&values, 2, &core).iter().map(|e| e.weight).collect();
        prim.sort_by(f64::total_cmp);
        boruvka.sort_by(f64::total_cmp);
        assert_eq!(prim, boruvka);
    }

    #[test]
    fn three_separated_blobs_are_recovered_without_noise_inside() {
        let (values, truth) = blobs(&[[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]], 60, 1.0, 9);
        let output = hdbscan(&values, 2, &HdbscanParameters::default());
        let clusters: std::collections::BTreeSet<i64> = output.labels.iter().copied().filter(|l| *l >= 0).collect();
        assert_eq!(clusters.len(), 3);
        let ari = crate::clustering::metrics::adjusted_rand_index(&truth, &output.labels);
        assert!(ari > 0.95, "ari {ari}");
        assert!(output.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
        for (label, probability) in output.labels.iter().zip(&output.probabilities) {
            if *label == -1 {
                assert_eq!(*probability, 0.0);
            }
        }
    }

    #[test]
    fn leaf_selection_gives_at_least_as_many_clusters_as_eom() {
        let (values, _) = blobs(&[[0.0, 0.0], [3.0, 0.0], [30.0, 0.0]], 50, 1.0, 4);
        let count = |selection| {
            let output = hdbscan(&values, 2, &HdbscanParameters { cluster_selection: selection, ..Default::default() });
            output.labels.iter().copied().filter(|l| *l >= 0).collect::<std::collections::BTreeSet<_>>().len()
        };
        assert!(count(ClusterSelection::Leaf) >= count(ClusterSelection::Eom));
    }

    #[test]
    fn small_or_degenerate_inputs_are_all_noise() {
        let parameters = HdbscanParameters::default();
        assert_eq!(hdbscan(&[1.0, 2.0], 2, &parameters).labels, vec![-1]);
        assert_eq!(hdbscan(&[1.0; 8], 2, &parameters).labels, vec![-1; 4]);
        assert!(hdbscan(&[], 2, &parameters).labels.is_empty());
        // Identical points: one blob, no split, allow_single_cluster is false -> noise.
        let output = hdbscan(&[0.5; 40], 2, &parameters);
        assert_eq!(output.labels, vec![-1; 20]);
    }
}
