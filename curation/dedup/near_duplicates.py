"""Near-duplicate search: candidates (MinHash + LSH), verified pairs, and star clusters around keepers.

Shared by dedup and the split leakage audit. A text's shingles (``curation.dedup.shingles``) give
its MinHash signature (``signatures``); LSH banding (``lsh``) proposes candidate pairs cheaply;
every candidate is then verified (``verify``) before it counts; clusters are stars around a keeper,
never chains. Everything is vectorised with numpy over batches of records (no Python loop per
shingle).

Example::

    near_duplicate_clusters(["Reset my password", "reset my  password!", "Refund please"])
    # -> [NearDuplicateCluster(keeper=0, members=[0, 1], similarities=[1.0, 1.0])]
    cross_near_duplicates(test_prompts, train_prompts)   # [(query_index, corpus_index, similarity)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from curation.dedup.lsh import lsh_candidate_pairs
from curation.dedup.shingles import DEFAULT_NGRAM, DEFAULT_THRESHOLD, normalise_text
from curation.dedup.signatures import DEFAULT_NUM_PERM, estimated_similarity, text_signatures
from curation.dedup.verify import verify_pairs

# Candidates whose MinHash estimate is this far below the threshold are not worth an exact check
# (over 2 standard deviations of a 128-row estimate near the threshold; most true pairs sit far above it).
_ESTIMATE_MARGIN = 0.1


Progress = Callable[[float, str], None]


@dataclass
class NearDuplicateCluster:
    """A keeper and the members verified to be within the threshold of it (keeper first, similarity 1)."""
    keeper: int
    members: list[int]
    similarities: list[float]


def _candidates(normalised: Sequence[str], threshold: float, num_perm: int, ngram: int,
                progress: Progress | None, keep: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """LSH candidate pairs (those ``keep`` accepts, bool per pair) whose MinHash estimate is not hopelessly
    below the threshold; both tests are made band by band, so the chance pairs are never all held at once."""
    sig, nonempty = text_signatures(normalised, num_perm, ngram=ngram, progress=_stage(progress, 0.0, 0.75))

    def accept(pairs: np.ndarray) -> np.ndarray:
        ok = np.ones(len(pairs), bool) if keep is None else keep(pairs)
        ok[ok] = estimated_similarity(sig, pairs[ok]) >= threshold - _ESTIMATE_MARGIN
        return ok

    return lsh_candidate_pairs(sig, threshold, active=nonempty, accept=accept, progress=_stage(progress, 0.75, 0.95))


def near_duplicate_pairs(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                         num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                         normalised: Sequence[str] | None = None,
                         progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every verified near-duplicate pair ``(i, j)``, i < j, within ``texts``, and its similarity.

    ``normalised`` (``normalise_text`` of each text) saves normalising again when the caller has it.
    """
    _check_threshold(threshold)
    if normalised is None:
        normalised = [normalise_text(t) for t in texts]
    pairs = _candidates(normalised, threshold, num_perm, ngram, _stage(progress, 0.0, 0.85))
    if progress:
        progress(0.9, "verifying candidate pairs")
    found = verify_pairs(texts, pairs, threshold, normalised=normalised, ngram=ngram)
    if progress:
        progress(1.0, "verified candidate pairs")
    return found


def near_duplicate_clusters(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                            num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                            priority: Sequence[float] | np.ndarray | None = None,
                            normalised: Sequence[str] | None = None,
                            progress: Progress | None = None) -> list[NearDuplicateCluster]:
    """Clusters of near-duplicate texts (only clusters of two or more), each member verified against its keeper.

    Texts are visited in ``priority`` order (lower first; default: input order). The first unclaimed
    text with a verified neighbour becomes a keeper and claims every unclaimed text verified as a
    near duplicate of *it*. No transitive chaining: A~B and B~C never puts A and C together unless
    C is within the threshold of the keeper itself.
    """
    n = len(texts)
    rank = np.arange(n, dtype=np.float64) if priority is None else np.asarray(priority, dtype=np.float64)
    if rank.shape != (n,):
        raise ValueError("priority must give one number per text")
    pairs, sims = near_duplicate_pairs(texts, threshold, num_perm=num_perm, ngram=ngram, normalised=normalised,
                                       progress=progress)
    return _star_clusters(n, pairs, sims, rank)


def _star_clusters(n: int, pairs: np.ndarray, sims: np.ndarray, rank: np.ndarray) -> list[NearDuplicateCluster]:
    if len(pairs) == 0:
        return []
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both_sims = np.concatenate([sims, sims])
    order = np.lexsort((both[:, 1], both[:, 0]))
    both, both_sims = both[order], both_sims[order]
    starts = np.searchsorted(both[:, 0], np.arange(n + 1))
    claimed = np.zeros(n, bool)
    clusters = []
    visit = np.lexsort((np.arange(n), rank))
    for keeper in visit[(np.diff(starts) > 0)[visit]]:
        if claimed[keeper]:
            continue
        lo, hi = starts[keeper], starts[keeper + 1]
        neighbours, neighbour_sims = both[lo:hi, 1], both_sims[lo:hi]
        free = ~claimed[neighbours]
        if not free.any():
            continue
        members, member_sims = neighbours[free], neighbour_sims[free]
        by_rank = np.lexsort((members, rank[members]))
        claimed[keeper] = True
        claimed[members] = True
        clusters.append(NearDuplicateCluster(
            keeper=int(keeper), members=[int(keeper)] + [int(m) for m in members[by_rank]],
            similarities=[1.0] + [round(float(s), 4) for s in member_sims[by_rank]]))
    return clusters


def cross_near_duplicates(queries: Sequence[str], corpus: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *,
                          num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM,
                          progress: Progress | None = None) -> list[tuple[int, int, float]]:
    """Every (query_index, corpus_index, similarity) verified as a near duplicate, sorted.

    For leakage audits: which test prompts have a near duplicate in train. Verification is the same
    as within one collection (``verify_pairs``), with boilerplate counted over both lists.
    Empty texts match nothing. All matching corpus texts of a query are returned, not only the best.
    """
    _check_threshold(threshold)
    nq = len(queries)
    if nq == 0 or len(corpus) == 0:
        return []
    texts = list(queries) + list(corpus)
    normalised = [normalise_text(t) for t in texts]
    pairs = _candidates(normalised, threshold, num_perm, ngram, _stage(progress, 0.0, 0.85),
                        keep=lambda p: (p[:, 0] < nq) & (p[:, 1] >= nq))
    if progress:
        progress(0.9, "verifying candidate pairs")
    pairs, sims = verify_pairs(texts, pairs, threshold, normalised=normalised, ngram=ngram)
    if progress:
        progress(1.0, "verified candidate pairs")
    return [(int(q), int(c) - nq, round(float(s), 4)) for (q, c), s in zip(pairs, sims)]


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the similarity threshold must be between 0 and 1, got {threshold}")


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """A progress callback for one stage, mapping its 0..1 onto lo..hi of the whole."""
    if progress is None:
        return None
    return lambda fraction, text: progress(lo + (hi - lo) * fraction, text)
