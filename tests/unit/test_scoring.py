"""Batch-scoring input checks against the model's input columns (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcycle.core.scoring import InputColumn, check_input, describe_rejections, output_frame
from mlcycle.errors import DataError

COLUMNS = [InputColumn("price", "double"), InputColumn("device", "string"), InputColumn("day", "datetime")]


def test_missing_required_columns_are_one_error_listing_all_of_them():
    with pytest.raises(DataError, match=r"in.csv: missing required column\(s\) price, day; the model needs price, device, day"):
        check_input(pd.DataFrame({"device": ["a"]}), COLUMNS, "in.csv")


def test_bad_cells_reject_their_rows_with_numbers_and_reasons_missing_cells_do_not():
    frame = pd.DataFrame(
        {
            "price": ["1.5", "abc", None, "2", "x"],
            "device": ["a", None, "b", "c", "d"],
            "day": ["2025-01-01", "2025-01-02", None, "yesterday", "2025-01-03"],
            "extra": [1, 2, 3, 4, 5],
        }
    )
    checked = check_input(frame, COLUMNS, "in.csv")
    assert checked.accepted.tolist() == [True, False, True, False, False]
    assert checked.rejected.to_dict("records") == [
        {"row": 2, "column": "price", "value": "abc", "reason": "'abc' is not a valid double", "expected": "double"},
        {"row": 4, "column": "day", "value": "yesterday", "reason": "'yesterday' is not a valid datetime",
         "expected": "datetime"},
        {"row": 5, "column": "price", "value": "x", "reason": "'x' is not a valid double", "expected": "double"},
    ]
    assert list(checked.frame.columns) == ["price", "device", "day"]
    assert checked.frame["price"].tolist()[0] == 1.5 and np.isnan(checked.frame["price"].tolist()[1])
    assert describe_rejections(checked.rejected, limit=2) == (
        "row 2: column 'price': 'abc' is not a valid double; "
        "row 4: column 'day': 'yesterday' is not a valid datetime; ... and 1 more row(s)"
    )
    # an answer to a request names rows and columns, never the values sent
    quiet = describe_rejections(checked.rejected, show_values=False)
    assert quiet == ("row 2: column 'price' is not a valid double; row 4: column 'day' is not a valid datetime; "
                     "row 5: column 'price' is not a valid double")
    assert "abc" not in quiet and "yesterday" not in quiet


def test_output_frame_keeps_accepted_rows_and_adds_predictions_and_probabilities():
    frame = pd.DataFrame({"id": [1, 2, 3]})
    out = output_frame(frame, np.array([True, False, True]), [0, 1], [[0.9, 0.1], [0.2, 0.8]], classes=(0, 1))
    assert out.to_dict("list") == {"id": [1, 3], "prediction": [0, 1], "probability_0": [0.9, 0.2], "probability_1": [0.1, 0.8]}
    with pytest.raises(DataError, match="already has column"):
        output_frame(pd.DataFrame({"prediction": [1]}), np.array([True]), [0])
