"""Where runs are and which is newest.

``python -m longtail.run`` writes each run to ``<log_dir>/runs/<name>/<date>/`` (a sweep job to
``<log_dir>/multiruns/<date>/<job number>_<name>/``) and then points ``<log_dir>/latest`` at it, so the newest
results are always at ``logs/latest/results.json``::

    import longtail
    run = longtail.latest_run()                     # logs/latest, found from here or any folder above
    model = longtail.load(longtail.selected_checkpoint(run))

Paths written by a run started in the repository root may be relative to it (``logs/runs/...``,
``data/cifar10``); :func:`resolve_path` finds them again from a notebook started in another folder.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

LATEST = "latest"  # the symbolic link <log_dir>/latest -> the newest run folder
LATEST_TXT = "latest.txt"  # its stand-in (the absolute path) where the file system has no symbolic links
RUN_FOLDERS = ("runs", "multiruns")


def link_latest(run_dir: str | Path, log_dir: str | Path) -> Path | None:
    """Point ``<log_dir>/latest`` at ``run_dir`` and return the link.

    The link is replaced atomically (a temporary link next to it, then ``os.replace``), so parallel sweep
    jobs never fail on each other: the last one to finish wins. Its target is relative when ``run_dir`` is
    inside ``log_dir`` (the logs folder can then be moved or copied whole). Where symbolic links cannot be
    made (some Windows or network file systems), ``<log_dir>/latest.txt`` holds the absolute path of the
    run instead and is returned; if neither can be written, None (the run itself is not affected).
    """
    run_dir, log_dir = Path(run_dir).absolute(), Path(log_dir).absolute()
    target = run_dir.relative_to(log_dir) if run_dir.is_relative_to(log_dir) else run_dir
    link, temporary = log_dir / LATEST, log_dir / f".{LATEST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(target, temporary, target_is_directory=True)
        os.replace(temporary, link)
    except OSError:
        if temporary.is_symlink():
            temporary.unlink()
        return _write_latest_txt(run_dir, log_dir)
    (log_dir / LATEST_TXT).unlink(missing_ok=True)  # a stand-in left by an earlier run would be stale
    return link


def _write_latest_txt(run_dir: Path, log_dir: Path) -> Path | None:
    path, temporary = log_dir / LATEST_TXT, log_dir / f".{LATEST_TXT}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temporary.write_text(f"{run_dir}\n")
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        return None
    return path


def find_log_dir() -> Path | None:
    """``$LONGTAIL_LOGS`` if set, else the first ``logs`` folder in the current directory or a folder above it
    (a notebook started in ``notebooks/`` finds the repository's ``logs``); None when there is none."""
    if os.environ.get("LONGTAIL_LOGS"):
        return Path(os.environ["LONGTAIL_LOGS"]).expanduser()
    here = Path.cwd()
    return next((folder / "logs" for folder in (here, *here.parents) if (folder / "logs").is_dir()), None)


def latest_run(log_dir: str | Path | None = None) -> Path:
    """The newest run folder under ``log_dir`` (default: :func:`find_log_dir`).

    ``<log_dir>/latest`` (or ``latest.txt``) when it points at a folder, else the run folder under
    ``<log_dir>/runs`` and ``<log_dir>/multiruns`` whose ``results.json`` was written last.
    """
    root = Path(log_dir).expanduser() if log_dir is not None else find_log_dir()
    if root is None:
        raise FileNotFoundError(
            f"no run found: no 'logs' folder in {Path.cwd()} or any folder above it, and LONGTAIL_LOGS is not set: "
            "run `python -m longtail.run` first, or set LONGTAIL_CHECKPOINT=<ckpt>"
        )
    pointed = _pointed_run(root)
    if pointed is not None:
        return pointed
    runs = find_runs(root / sub for sub in RUN_FOLDERS)
    if not runs:
        raise FileNotFoundError(
            f"no run found under {root.absolute()}: run `python -m longtail.run` first, "
            "or set LONGTAIL_CHECKPOINT=<ckpt>"
        )
    return max(runs, key=lambda run: (run / "results.json").stat().st_mtime)


def _pointed_run(root: Path) -> Path | None:
    """The run ``<root>/latest`` (or ``latest.txt``) points at, if it still exists."""
    link = root / LATEST
    if link.is_dir():
        return link.resolve()
    text = root / LATEST_TXT
    if text.is_file():
        run = Path(text.read_text().strip())
        if run.is_dir():
            return run
    return None


def find_runs(paths) -> list[Path]:
    """Every run folder under ``paths`` (a run folder, a ``results.json``, or any folder above runs), sorted and
    de-duplicated: a folder with a ``results.json`` that is Hydra's run folder (``.hydra``) or not a stage folder
    inside one; a folder named itself (or its ``results.json``) counts whatever it is, a stage folder too."""
    found = set()
    for path in map(Path, paths):
        named = path if path.is_file() else path / "results.json"
        if named.is_file():
            found.add(named.parent.resolve())
        for file in ([] if path.is_file() else path.rglob("*/results.json")):
            folder = file.parent
            if (folder / ".hydra").is_dir() or not (
                    (folder.parent / "results.json").is_file() or (folder.parent / ".hydra").is_dir()):
                found.add(folder.resolve())
    return sorted(found)


def selected_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run selected (the ``checkpoint`` of its top-level ``results.json``), found from here.

    ``run_dir`` is a run folder, a stage folder (its stage's checkpoint) or a ``results.json`` itself. A relative
    path is tried from the current directory, then from the run folder and each folder above it; a run folder
    moved elsewhere is handled by looking for the path's tail (``<stage>/checkpoints/x.ckpt``) inside it.
    """
    results = Path(run_dir)
    if not results.is_file():
        results = results / "results.json"
    if not results.is_file():
        raise FileNotFoundError(
            f"'{run_dir}' holds no results.json: pass a run folder of `python -m longtail.run` "
            "(logs/runs/<name>/<date>), or set LONGTAIL_CHECKPOINT=<ckpt>"
        )
    run_dir = results.parent
    written = _read_results(results).get("checkpoint")
    if not written:
        raise ValueError(f"{results} names no selected checkpoint (no 'checkpoint' key)")
    found = resolve_path(written, run_dir) or _tail_inside(Path(written), run_dir)
    if found is None:
        raise FileNotFoundError(
            f"the checkpoint '{written}' selected in {results} is not found from {Path.cwd()}, "
            f"nor from {run_dir.absolute()} and the folders above it"
        )
    return found


def _read_results(results: Path) -> dict:
    """The content of a ``results.json``; a ValueError naming the file when it is not JSON of an object."""
    try:
        content = json.loads(results.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{results} is not a results.json of longtail.run: it does not parse as JSON ({error})"
                         ) from None
    if not isinstance(content, dict):
        raise ValueError(f"{results} is not a results.json of longtail.run: it holds a {type(content).__name__}, "
                         "not an object")
    return content


INIT_FROM_HINT = "pass a checkpoint (.ckpt), or the folder or results.json of a finished run or stage"


def resolve_init_from(path: str | Path) -> str:
    """The checkpoint ``init_from=<path>`` names, so a stage can start from a run without digging out its file.

    ``path`` itself when it is a file other than a ``.json`` (a checkpoint: :func:`longtail.common.checkpoint.read_checkpoint`
    checks it when it is loaded); the checkpoint a run or stage selected when it is that run's or stage's folder or
    its ``results.json`` (:func:`selected_checkpoint`). A relative path is taken from the current directory, as the
    user typed it. Anything else is an error saying what ``path`` is and what it holds (one line, for the console).
    """
    typed = Path(path).expanduser()
    if typed.is_file() and typed.suffix != ".json":
        return str(path)
    if not typed.exists():
        raise FileNotFoundError(f"init_from={path} does not exist (looked for from {Path.cwd()}): {INIT_FROM_HINT}")
    if typed.is_dir() and not (typed / "results.json").is_file():
        raise ValueError(f"init_from={path} is {_folder_without_results(typed)}")
    try:
        return str(selected_checkpoint(typed))
    except (ValueError, OSError) as error:
        raise ValueError(f"init_from={path}: {error}") from None


def _folder_without_results(folder: Path) -> str:
    """What a folder without ``results.json`` holds, in words, and what to pass instead: the checkpoints directly
    in it, in its ``checkpoints/`` or in its stages' (a run that did not finish, a stage's ``checkpoints`` folder).
    Deeper folders are not searched: ``init_from=.`` in a folder of data sets must not walk millions of files."""
    runs = sorted(results.parent for results in folder.glob("*/results.json"))
    if runs:
        return f"a folder of runs, without results.json of its own, that holds {_some(runs, folder, 'run')}"
    found = sorted({*folder.glob("*.ckpt"), *folder.glob("checkpoints/*.ckpt"), *folder.glob("*/checkpoints/*.ckpt")})
    if not found:
        return f"a folder without results.json or checkpoints: {INIT_FROM_HINT}"
    return f"a folder without results.json (no finished run or stage) that holds {_some(found, folder, 'checkpoint')}"


def _some(paths: list[Path], folder: Path, kind: str) -> str:
    """``"2 runs (a, b): pass one of them"``: how many ``paths`` there are, the first three relative to ``folder``."""
    named = ", ".join(str(p.relative_to(folder)) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
    return f"{len(paths)} {kind}{'s' if len(paths) > 1 else ''} ({named}): pass one of them"


def _tail_inside(path: Path, folder: Path) -> Path | None:
    """The longest tail of ``path`` that exists inside ``folder`` (a run folder moved after the run)."""
    parts = path.parts
    for start in range(1, len(parts)):
        candidate = folder / Path(*parts[start:])
        if candidate.is_file():
            return candidate.absolute()
    return None


def resolve_path(path: str | Path, anchor: str | Path) -> Path | None:
    """Find ``path`` as it was written by a run: as is when absolute; when relative, from the current directory,
    then from ``anchor`` (a run folder, a checkpoint) and each folder above it, which includes the folder the
    run was started in when its logs are below it. None when it exists nowhere."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    anchor = Path(anchor).absolute()
    for base in (Path.cwd(), anchor, *anchor.parents):
        if (base / path).exists():
            return (base / path).absolute()
    return None


def data_root(root: str | None, checkpoint: str | Path) -> str | None:
    """The data root (``datamodule.root``) a checkpoint's config names, found from here with
    :func:`resolve_path` (older checkpoints hold it relative to the folder the run was started in);
    returned unchanged when not found, so the data module's own error names it."""
    if root is None:
        return None
    found = resolve_path(root, checkpoint)
    return str(found) if found is not None else root


def load_datamodule(path: str | Path, stage: str = "test"):
    """The data module of the run that wrote the checkpoint at ``path``, set up for ``stage``.

    Its data root is looked for with :func:`data_root`: a checkpoint of an older run may hold
    it relative to the folder the run was started in (``./data/cifar10``), which a notebook started
    elsewhere finds from the checkpoint's own folders.
    """
    from hydra.utils import instantiate

    from longtail.common.checkpoint import CHECKPOINT_KEY, moved_targets, read_checkpoint

    config = moved_targets(dict(read_checkpoint(path)[CHECKPOINT_KEY]["config"]["datamodule"]))
    if config.get("root") is not None:
        config["root"] = data_root(config["root"], path)
    datamodule = instantiate(config)
    datamodule.setup(stage)
    return datamodule
