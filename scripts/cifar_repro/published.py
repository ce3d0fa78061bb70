"""Published per-epoch curves (config/published/*.csv): what a paper or notebook printed, drawn beside
the measured curves. A file holds comment lines (#) with its source, then the columns
stage, epoch, continuous_epoch, train_accuracy, val_accuracy (accuracies as fractions)."""

from pathlib import Path

import pandas as pd

from .errors import InputError

CURVE_COLUMNS = ["stage", "epoch", "continuous_epoch", "train_accuracy", "val_accuracy"]


def load_curve(path: str | Path) -> pd.DataFrame:
    try:
        curve = pd.read_csv(path, comment="#")
    except FileNotFoundError:
        raise InputError(f"{path}: no such published curve") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: not a published curve CSV ({error})") from None
    missing = [column for column in CURVE_COLUMNS if column not in curve.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    if curve.empty or not all(pd.api.types.is_numeric_dtype(curve[column]) for column in CURVE_COLUMNS):
        raise InputError(f"{path}: needs rows of numbers in {', '.join(CURVE_COLUMNS)}")
    accuracies = curve[["train_accuracy", "val_accuracy"]].to_numpy()
    if not ((accuracies >= 0) & (accuracies <= 1)).all():
        raise InputError(f"{path}: accuracies must be fractions between 0 and 1")
    return curve[CURVE_COLUMNS]
