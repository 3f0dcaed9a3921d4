//! How the loops split their work across rayon's threads.

/// The smallest share of work one thread takes.
const BLOCK: usize = 1024;
/// Below this many elements one thread does it all.
const PARALLEL_FROM: usize = 1 << 15;

/// How many of `len` elements each thread takes.
pub(crate) fn chunk_len(len: usize) -> usize {
    if len >= PARALLEL_FROM { len.div_ceil(rayon::current_num_threads()).max(BLOCK) } else { len.max(1) }
}

/// Rows of `n` elements each thread takes: an equal share, at least about 2^14 elements
/// (row kernels: softmax, layer norm).
pub(crate) fn rows_per_task(rows: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads).max((1 << 14) / n.max(1)).max(1)
}

/// Whether a reduction over `elements` values is worth splitting into bands across threads.
pub(crate) fn splits(elements: usize) -> bool {
    elements >= PARALLEL_FROM
}
