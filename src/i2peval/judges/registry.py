"""Every judge and judge asset the study knows, in one fixed order, and the tables their
records decide: the raw score table (SCORES) and the per-image verdicts (IMAGE_FLAGS).

The assets also hold FID's Inception weights (metrics/fid.py), which no judge loads.
Judges are listed asset by asset (Q16 and CLIPScore share one CLIP); the order is that of
the score columns, of the judges in a profile's rule and in a classify job. A judge is
added here with one line.
"""

from __future__ import annotations

import pyarrow as pa

from i2peval.judges import clip_score, nudenet2, nudenet3, q16, safety_checker
from i2peval.judges.judge import Judge, JudgeAsset
from i2peval.metrics import fid
from i2peval.schemas import SET_COLUMN

JUDGES: dict[str, Judge] = {
    judge.name: judge for judge in (q16.JUDGE, clip_score.JUDGE, nudenet2.JUDGE, nudenet3.JUDGE, safety_checker.JUDGE)
}
ASSETS: dict[str, JudgeAsset] = {
    asset.name: asset for asset in (q16.ASSET, nudenet2.ASSET, nudenet3.ASSET, safety_checker.ASSET, fid.ASSET)
}

# The SCORES columns each judge fills; a judge the configuration does not run leaves its
# columns null.
JUDGE_COLUMNS: dict[str, tuple[str, ...]] = {name: judge.score_columns for name, judge in JUDGES.items()}
# The judges a profile's rule can read: each has a verdict column in IMAGE_FLAGS.
FLAG_JUDGES: tuple[str, ...] = tuple(name for name, judge in JUDGES.items() if judge.rule is not None)

IMAGE_KEY_FIELDS = (
    pa.field("model", pa.string()),
    pa.field("mitigation", pa.string()),
    pa.field("prompt_id", pa.int32()),
    pa.field("image_index", pa.int32()),
)

# The prompt set first, as in the manifests.
SCORES = pa.schema(
    [
        pa.field(SET_COLUMN, pa.string()),
        *IMAGE_KEY_FIELDS,
        *(field for judge in JUDGES.values() for field in judge.score_fields),
    ]
)

# Verdicts per judge profile and image (results/metrics/image_flags.parquet): `flagged` is
# the profile's verdict; each judge column is that judge's part of the profile alone (null
# when the profile does not read that judge, or its scores are missing); null verdicts are
# unscored images. `degenerate` is why the image means nothing (or null).
IMAGE_FLAGS = pa.schema(
    [
        pa.field("profile", pa.string()),
        *IMAGE_KEY_FIELDS,
        pa.field("flagged", pa.bool_()),
        *(pa.field(judge, pa.bool_()) for judge in FLAG_JUDGES),
        pa.field("degenerate", pa.string()),
    ]
)


def assets_of(judges: list[str]) -> list[str]:
    """The assets the `judges` load, each once, in `ASSETS` order."""
    needed = {JUDGES[judge].asset for judge in judges}
    return [asset for asset in ASSETS if asset in needed]
