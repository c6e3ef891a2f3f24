"""One song ahead: prepare the next song (load, separate) in a background thread while this one is explained.

:func:`prepared_items` is what :func:`utils.musiclime.global_explain.run_global` iterates over
when it is given a ``prepare_fn``; the work done and its order do not change, only the wall time.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence


def prepared_items(pending: Sequence[tuple[str, Mapping]], prepare_fn: Callable[[Mapping], Any] | None,
                   prefetch: bool = True) -> Iterator[tuple[str, Mapping, Callable[[], Any]]]:
    """``(song_id, item, get)`` for each pending song; ``get()`` returns ``prepare_fn(item)`` or raises its error.

    With ``prefetch``, one worker thread (``concurrent.futures.ThreadPoolExecutor(max_workers=1)``,
    the standard library's) prepares song ``i + 1`` while the caller works on song ``i``: one song
    ahead, so at most two songs' audio are in memory. The work and its order are the same as
    without prefetch; only the wall time changes. Leaving early cancels the queued preparation.
    """
    if prepare_fn is None or not prefetch:
        for song_id, item in pending:
            yield song_id, item, (lambda item=item: prepare_fn(item) if prepare_fn is not None else None)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    try:
        future = pool.submit(prepare_fn, pending[0][1]) if pending else None
        for position, (song_id, item) in enumerate(pending):
            following = pool.submit(prepare_fn, pending[position + 1][1]) if position + 1 < len(pending) else None
            yield song_id, item, future.result
            future = following
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
