"""Write tests/data/v1/: a small archive the pipeline wrote before issue 8's strict decoder and checks.

Kept in git (a few KB, gzip) so that every later change proves old archives still verify
(tests/test_v1_archive.py). Run once, from the repository root, with the code of that time:

    .venv/bin/python tests/tools/make_v1_archive.py

It writes two streams of one producer (a clean restart: the second names the first), mixed value
types, checkpoints every 20 records, and the public keyring only (the private key is discarded).
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import make_pipeline, mixed_record  # noqa: E402

from otel_audit import keys  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "data" / "v1"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        keys.generate(t / "keys", "v1-fixture")
        archive = t / "audit.jsonl"
        for run in range(2):
            provider, _ = make_pipeline(archive, t / "keys", checkpoint_every=20, state_dir=t / "state")
            logger = provider.get_logger("otel_audit.tests")
            for i in range(45):
                logger.emit(**mixed_record(run * 100 + i))
            provider.shutdown()
        OUT.mkdir(parents=True, exist_ok=True)
        with open(archive, "rb") as src, gzip.GzipFile(OUT / "audit.jsonl.gz", "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
        keys.export(t / "keys", OUT / "keyring.json")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
