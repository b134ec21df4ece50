"""Checkpoints: one directory per run, written so that a kill at any moment leaves the previous
checkpoint whole, and read back only after every part has been checked.

    RUN_DIR/
      latest                  the name of the newest complete checkpoint (replaced atomically)
      ckpt-00001000/          one checkpoint, written under a temporary name and renamed
        model.safetensors     the weights under torch's names (embedding.weight, rnn.weight_ih_l0, ...)
        state.safetensors     optimizer buffers and the hidden state carried between chunks
        checkpoint.json       format version, model arguments, vocabulary, training config,
                              optimizer hyperparameters and step, RNG state, step, data position,
                              SHA-256 of both tensor files
      best/                   the checkpoint of the best validation result so far (``save_best``,
                              ``copy_to_best``: replaced by two renames, never pruned)
      metrics.jsonl           the training log (truncated to the checkpoint's length on resume)

No pickle anywhere: tensors go to safetensors, everything else to JSON.
"""

import hashlib
import json
import os
import shutil

import numpy as np

FORMAT = "bptt-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest"
BEST = "best"
KEEP = 2  # complete checkpoints kept per run


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_durable(src, dst):
    """shutil.copy2, then the copy's data flushed to the disk (fsync), so that a copy renamed into
    place after a power loss is whole, not short."""
    shutil.copy2(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return dst


def _write_tensors(path, tensors, metadata=None):
    """Write a safetensors file and flush it to the disk -> the SHA-256 of its bytes (hashed
    as written, not read back)."""
    from safetensors.numpy import save

    try:
        data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)
    except Exception as e:  # safetensors reports its errors as its own error type
        raise OSError(f"cannot write {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.filename is None and e.errno:  # a write's own error (e.g. a full disk) names no file
            raise OSError(e.errno, e.strerror, path) from None
        raise
    return hashlib.sha256(data).hexdigest()


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_name(step):
    return f"ckpt-{step:08d}"


def save_checkpoint(run_dir, step, weights, state_tensors, meta):
    """Write checkpoint ``step`` into ``run_dir`` atomically and point ``latest`` at it.

    weights: name -> array (torch names); state_tensors: name -> array (optimizer, carry);
    meta: JSON-able dict. Returns the checkpoint directory."""
    os.makedirs(run_dir, exist_ok=True)
    name = checkpoint_name(step)
    final = os.path.join(run_dir, name)
    tmp = os.path.join(run_dir, f".tmp-{name}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        files = {"model.safetensors": _write_tensors(os.path.join(tmp, "model.safetensors"), weights, {"format": "pt"}),
                 "state.safetensors": _write_tensors(os.path.join(tmp, "state.safetensors"), state_tensors)}
        meta = dict(meta, format=FORMAT, format_version=FORMAT_VERSION, step=step, files=files)
        _write_json(os.path.join(tmp, "checkpoint.json"), meta)
        _fsync_dir(tmp)
        if os.path.exists(final):  # the same step saved again (e.g. after a resume)
            old = final + f".old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(run_dir)
        latest_tmp = os.path.join(run_dir, f".{LATEST}.tmp-{os.getpid()}")
        with open(latest_tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(latest_tmp, os.path.join(run_dir, LATEST))
        _fsync_dir(run_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.filename is None and e.errno:  # name what was being written
            raise OSError(e.errno, e.strerror, tmp) from None
        raise
    _prune(run_dir, keep={name})
    return final


def holds_checkpoints(run_dir):
    """Whether run_dir is a directory holding checkpoints (or the leftovers of one being written)."""
    return os.path.isdir(run_dir) and any(n.startswith("ckpt-") for n in os.listdir(run_dir))


def _checkpoint_dirs(run_dir):
    names = [n for n in os.listdir(run_dir) if n.startswith("ckpt-") and n[5:].isdigit()]
    return sorted(names)


def _prune(run_dir, keep):
    """Remove all but the newest KEEP checkpoints, and leftovers of interrupted writes."""
    names = _checkpoint_dirs(run_dir)
    for n in names[:-KEEP]:
        if n not in keep:
            shutil.rmtree(os.path.join(run_dir, n), ignore_errors=True)
    for n in os.listdir(run_dir):
        if n.startswith((".tmp-ckpt-", f".{LATEST}.tmp-", ".best-")) or ".old-" in n:
            p = os.path.join(run_dir, n)
            if not n.endswith(f"-{os.getpid()}"):
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)


def resolve(path):
    """A run directory (follows ``latest``) or a checkpoint directory -> checkpoint directory."""
    if not os.path.exists(path):
        raise CheckpointError(f"no run or checkpoint at {path}")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is not a run directory or checkpoint directory")
    if os.path.exists(os.path.join(path, "checkpoint.json")):
        return path
    latest = os.path.join(path, LATEST)
    if os.path.exists(latest):
        with open(latest, encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
        cand = os.path.join(path, name)
        if name.startswith("ckpt-") and os.path.exists(os.path.join(cand, "checkpoint.json")):
            return cand
    names = _checkpoint_dirs(path)
    if not names:
        raise CheckpointError(f"{path} holds no checkpoint (not a bptt run directory)")
    return os.path.join(path, names[-1])


def _read_tensors(path):
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is damaged: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def load_checkpoint(path):
    """-> (checkpoint_dir, meta, weights, state_tensors), each part checked for integrity.
    Shapes against the model are checked by the caller that builds the model."""
    ckpt = resolve(path)
    try:
        return _load(ckpt)
    except CheckpointError as e:
        older = [n for n in _checkpoint_dirs(os.path.dirname(ckpt) or ".") if n < os.path.basename(ckpt)]
        if ckpt == path or not older:
            raise
        alt = os.path.join(os.path.dirname(ckpt), older[-1])
        raise CheckpointError(f"{e}; an older checkpoint is {alt} (give that path instead)") from None


def _load(ckpt):
    meta_path = os.path.join(ckpt, "checkpoint.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path} is damaged: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a bptt checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format version {meta.get('format_version')!r}; "
            f"this bptt reads version {FORMAT_VERSION}"
        )
    files = meta.get("files") or {}
    if not isinstance(files, dict):
        raise CheckpointError(f"{meta_path} is damaged: 'files' must map file names to checksums")
    for fname, digest in files.items():
        fpath = os.path.join(ckpt, fname)
        if not os.path.exists(fpath):
            raise CheckpointError(f"{fpath} is missing")
        if _sha256(fpath) != digest:
            raise CheckpointError(f"{fpath} is damaged: its checksum does not match checkpoint.json")
    weights = _read_tensors(os.path.join(ckpt, "model.safetensors"))
    state = _read_tensors(os.path.join(ckpt, "state.safetensors"))
    return ckpt, meta, weights, state


# ----------------------------------------------------------------------------- the best one
def save_best(run_dir, step, weights, state_tensors, meta):
    """Write checkpoint ``step`` as RUN_DIR/best (as ``save_checkpoint`` does, in a staging
    directory of its own, then moved into place): the run's own checkpoints and ``latest`` are
    not touched. Returns the path of RUN_DIR/best."""
    staging = os.path.join(run_dir, f".best-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        return _install_best(save_checkpoint(staging, step, weights, state_tensors, meta), run_dir, copy=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copy_to_best(ckpt_dir, run_dir):
    """Copy the checkpoint directory ``ckpt_dir`` to RUN_DIR/best. Returns its path."""
    return _install_best(ckpt_dir, run_dir, copy=True)


def _install_best(src, run_dir, copy):
    """src (a complete checkpoint directory) becomes RUN_DIR/best, the old one replaced by two
    renames: a kill at any moment leaves the old or the new one whole, or ``best.old``, which
    ``best_dir`` falls back to; a copy's files and directory are on the disk (fsync) before the
    renames, so a power loss does the same."""
    dst = os.path.join(run_dir, BEST)
    tmp, old = dst + ".new", dst + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    if copy:
        shutil.copytree(src, tmp, copy_function=_copy_durable)
        _fsync_dir(tmp)
    else:
        os.replace(src, tmp)
    if os.path.exists(dst):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(tmp, dst)
    _fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def best_dir(run_dir):
    """RUN_DIR/best (or the ``best.old`` a kill left), or None when the run has none."""
    for name in (BEST, BEST + ".old"):
        cand = os.path.join(run_dir, name)
        if os.path.isfile(os.path.join(cand, "checkpoint.json")):
            return cand
    return None


def resolve_best(path, required=False):
    """A run directory -> its best checkpoint; without one: the path as given, or (``required``)
    a CheckpointError saying so."""
    found = best_dir(path) if os.path.isdir(path) else None
    if found is not None or not required:
        return found or path
    if not os.path.exists(path):
        raise CheckpointError(f"no run or checkpoint at {path}")
    if os.path.isfile(os.path.join(path, "checkpoint.json")):
        raise CheckpointError(f"--best needs a run directory, {path} is one checkpoint")
    raise CheckpointError(f"{path} has no best checkpoint yet (it is kept from the first validation "
                          f"on, and needs a validation part: --val-fraction > 0)")
