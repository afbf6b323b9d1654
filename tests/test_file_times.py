"""Recording times in file names (Orcasound's FLAC archive) read in a named zone, never the
machine's: the same UTC under two machine zones, daylight saving on both sides."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from orca_beam.core.file_times import FileTimeError, file_start_utc, time_zone

FORMAT = "%Y-%m-%d_%H-%M-%S"


@pytest.fixture(params=["Asia/Tokyo", "America/New_York"])
def machine_zone(request):
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_names_in_local_time_give_utc_whatever_the_machine_zone(machine_zone):
    summer = "s3://archive-orcasound-net/rpi_orcasound_lab/2021-10-01_17-00-00_rpi-48000-1.flac"
    winter = "archive/2021-12-01_17-00-00_rpi-48000-1.flac"
    assert file_start_utc(summer, FORMAT, "America/Los_Angeles") == datetime(
        2021, 10, 2, 0, 0, tzinfo=UTC)  # PDT, UTC-7
    assert file_start_utc(winter, FORMAT, "America/Los_Angeles") == datetime(
        2021, 12, 2, 1, 0, tzinfo=UTC)  # PST, UTC-8
    assert file_start_utc(winter, FORMAT) == datetime(2021, 12, 1, 17, 0, tzinfo=UTC)
    assert file_start_utc("2021-12-01T17:00:00+0100.flac", "%Y-%m-%dT%H:%M:%S%z",
                          "America/Los_Angeles") == datetime(2021, 12, 1, 16, 0, tzinfo=UTC)


def test_a_name_without_the_time_and_an_unknown_zone_are_clear_errors():
    with pytest.raises(FileTimeError, match="does not start with a time"):
        file_start_utc("gs://b/clip_0004.wav", FORMAT)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        time_zone("Mars/Olympus")
