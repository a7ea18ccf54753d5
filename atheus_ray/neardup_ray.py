"""Near-duplicate pairs on a Ray cluster: the same pairs as atheus_ray.neardup.near_pairs, found by Ray Data
tasks spread over the cluster's CPUs instead of one process.

The steps are neardup's, each a Ray Data operation:
1. 3-gram counts: `map_batches` counts each block's 3-grams; the driver adds the blocks' count tables
   (64 MB each, so at most COUNT_BLOCKS of them);
2. signatures and band keys: `map_batches`, the counts read from the object store;
3. buckets, one task per band: each sorts its band's keys and yields the pairs that share the band and no
   earlier one and pass the agreement prefilter (neardup's own kernel, the signatures and keys read from the
   object store);
4. exact ROUGE-L: `map_batches` over the candidate pairs, the texts read from the object store.
Every step computes what neardup computes, with the same hashes and the same counts, so the pairs, and the
rows the best-first pass keeps from them, are exactly the single-process ones (tests/test_neardup_ray.py); a
text with a lone surrogate, which Arrow cannot hold, is checked with U+FFFD in its place.
The driver holds the texts and the signatures (about 1 KB a text) and adds up the counts;
the hashing, the bucket passes and the exact checks, the parts that grow with the data, run on the cluster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from rapidfuzz import process
from rapidfuzz.distance import Indel

from atheus_ray import neardup
from atheus_ray.text import printable

COUNT_BLOCKS = 8  # blocks of the counting step: each sends the driver a 64 MB table


def _get(value):
    """A value passed by reference (ray.put), read from the object store; numpy and Arrow arrays without a copy."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _texts(texts, index: np.ndarray) -> list[str]:
    return _get(texts).take(pa.array(index)).to_pylist()


def _counts(batch: dict, texts) -> dict:
    flat, offsets = neardup.code_points(_texts(texts, batch["i"]))
    return {"counts": neardup._gram_counts(flat, offsets)[None]}


def _sign(batch: dict, texts, counts) -> dict:
    flat, offsets = neardup.code_points(_texts(texts, batch["i"]))
    a, b = neardup.hash_parameters()
    sig = neardup._signatures(flat, offsets, _get(counts), neardup.COMMON, neardup.MIN_GRAMS, a, b)
    return {"i": batch["i"], "sig": sig, "keys": neardup._band_keys(sig, neardup.BANDS, neardup.ROWS).T.copy()}


def _bucket(batch: dict, sig, keys) -> dict:
    sig, keys = _get(sig), _get(keys)
    pairs = np.concatenate([neardup.band_pairs(sig, keys, int(band)) for band in batch["band"]])
    return {"i": pairs[:, 0], "j": pairs[:, 1]}


def _verify(batch: dict, texts, threshold: float) -> dict:
    a, b = _texts(texts, batch["i"]), _texts(texts, batch["j"])
    scores = process.cpdist(a, b, scorer=Indel.normalized_similarity, workers=1, dtype=np.float64)
    keep = scores > threshold
    return {"i": batch["i"][keep], "j": batch["j"][keep], "score": scores[keep]}


def near_pairs_on_ray(texts: list[str], threshold: float, blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `neardup.near_pairs(texts, threshold)` returns, computed by Ray Data in `blocks` blocks a step
    (Ray must be initialised)."""
    import ray

    group, unique = neardup.groups(texts)
    if len(unique) < 2:
        return group, np.empty((0, 2), dtype=np.int64), np.empty(0)
    # Arrow holds UTF-8, which has no lone surrogates: such a text is checked with U+FFFD in their place
    texts_ref = ray.put(pa.array([printable(texts[i]) for i in unique], type=pa.large_string()))
    index = ray.data.range(len(unique), override_num_blocks=blocks).rename_columns({"id": "i"})

    counts = np.zeros(1 << neardup._COUNT_BITS, dtype=np.uint32)
    counting = ray.data.range(len(unique), override_num_blocks=min(blocks, COUNT_BLOCKS)).rename_columns({"id": "i"})
    for batch in counting.map_batches(_counts, fn_kwargs={"texts": texts_ref}, batch_size=None).iter_batches(
        batch_size=1, batch_format="numpy"
    ):
        counts += batch["counts"][0]

    sig = np.empty((len(unique), neardup.NUM_PERM), dtype=np.uint32)
    keys = np.empty((neardup.BANDS, len(unique)), dtype=np.uint64)
    signed = index.map_batches(_sign, fn_kwargs={"texts": texts_ref, "counts": ray.put(counts)}, batch_size=None)
    for batch in signed.iter_batches(batch_size=None, batch_format="numpy"):
        sig[batch["i"]], keys[:, batch["i"]] = batch["sig"], batch["keys"].T

    bands = ray.data.range(neardup.BANDS, override_num_blocks=min(blocks, neardup.BANDS))
    candidates = bands.rename_columns({"id": "band"}).map_batches(
        _bucket, fn_kwargs={"sig": ray.put(sig), "keys": ray.put(keys)}, batch_size=None
    )
    verified = candidates.map_batches(_verify, fn_kwargs={"texts": texts_ref, "threshold": threshold}, batch_size=4096)
    found = [batch for batch in verified.iter_batches(batch_size=None, batch_format="numpy") if len(batch["i"])]
    if not found:
        return group, np.empty((0, 2), dtype=np.int64), np.empty(0)
    pairs = np.stack([np.concatenate([b["i"] for b in found]), np.concatenate([b["j"] for b in found])], axis=1)
    scores = np.concatenate([b["score"] for b in found])
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))  # the order neardup's does not matter; a fixed one helps tests
    return group, unique[pairs[order]], scores[order]
