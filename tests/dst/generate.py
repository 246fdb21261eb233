#!/usr/bin/env python3
"""Fixtures for tests/dst.rs: cron occurrences and anniversary instants computed outside
aftercare's code path, by croniter and Python's zoneinfo.

    python3 -m pip install croniter==7.0.0 tzdata==2025.2
    python3 tests/dst/generate.py           # rewrite tests/dst/*.json
    python3 tests/dst/generate.py --check   # exit 1 if they differ from what this computes

Two answers per cron case, both over the window, in every zone:

- "croniter": croniter's own time-zone-aware iteration, as it is (its DST rules are not
  ours: it also fires a fixed-time job in the second pass of a repeated hour, and fires a
  job whose times a gap swallowed at the gap's end even when its hour field is `*`).
- "expected": our documented rules (README "Cron and DST"), applied here independently of
  the Rust code: croniter finds the wall-clock matches (naive datetimes: pure calendar
  arithmetic, no zone) and `instants()` maps each to instants with zoneinfo.

tests/dst.rs asserts aftercare equals "expected" exactly, and that every difference from
"croniter" is one of the two documented rule differences, checked case by case.

Zone data: tzdata 2025b, the release chrono-tz 0.10.4 compiles in; the tzdata package is
used (not the system's files) so every machine computes the same fixture.
"""

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone
import zoneinfo

from importlib.metadata import version
from croniter import croniter

UTC = timezone.utc
HERE = os.path.dirname(os.path.abspath(__file__))
TZDATA = "2025b"

# One year holding a gap and an overlap in every DST zone below, and Feb 29 2028.
WINDOW = (datetime(2027, 3, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC))

ZONES = [
    "America/New_York",      # 02:00 -> 03:00, 02:00 -> 01:00
    "Europe/Berlin",         # 02:00 -> 03:00, 03:00 -> 02:00
    "Australia/Lord_Howe",   # a 30-minute shift: 02:00 -> 02:30, 02:00 -> 01:30
    "America/Havana",        # at midnight: 00:00 -> 01:00, 01:00 -> 00:00
    "America/Santiago",      # at midnight: 24:00 -> 01:00, 24:00 -> 23:00
    "Asia/Beirut",           # at midnight: 00:00 -> 01:00, 24:00 -> 23:00
    "Pacific/Chatham",       # +12:45/+13:45: 02:45 -> 03:45, 03:45 -> 02:45
    "America/Scoresbysund",  # a gap that ends the day: 23:00 -> 24:00
    "Pacific/Auckland",      # southern hemisphere
    "Asia/Kathmandu",        # +05:45, no DST
    "Asia/Shanghai",         # the shipped default, no DST
]

# The same expressions in every zone: fixed times, ranges, steps, lists, L, day-of-month OR
# day-of-week, Feb 29, wildcard and fixed hours at the hours clocks change.
COMMON = [
    "0 10 * * MON",            # the shipped survey
    "*/15 9-17 * * MON-FRI",   # business hours
    "0 * * * *",               # hourly: wildcard hour
    "*/30 * * * 0,6",          # weekends, every half hour: wildcard hour
    "30 */2 * * *",            # wildcard hour with a step
    "0 8-18/2 * * *",          # fixed hours, a range with a step
    "0 0 * * *",
    "30 0 * * *",
    "0 1 * * *",
    "30 1 * * *",
    "0 2 * * *",
    "30 2 * * *",
    "0 3 * * *",
    "*/10 1 * * *",            # fixed hour, wildcard minute
    "*/20 2 * * *",
    "0,30 2 * * *",
    "45 23 * * *",
    "0 23 * * SAT",
    "5 4 * * SUN",
    "0 22 * * 1-5",
    "0 9 L * *",               # last day of the month
    "0 9 L 2 *",               # Feb 28, then Feb 29 2028
    "0 9 29 2 *",              # Feb 29 only
    "0 9 1,15 * FRI",          # the 1st, the 15th, or a Friday
    "0 12 13 * 5",             # the 13th or a Friday
    "0 0 1 1 *",               # New Year
    "0 6 * 3,4,9,10,11 0",     # Sundays of the months clocks change in
]

# Frequent expressions far from any clock change: checked in a few zones only (a year of
# them costs croniter seconds per zone).
BUSINESS_HOURS = {
    "*/15 9-17 * * MON-FRI": ["America/New_York", "Australia/Lord_Howe", "Asia/Shanghai"],
}

# Anniversaries: the times of day the birthday jobs of tests/dst.rs use.
ANNIVERSARY_AT = ["00:00", "00:30", "01:30", "01:45", "02:15", "02:30", "03:00", "03:15",
                  "09:00", "23:30"]
ANNIVERSARY_ZONES = ZONES + ["Pacific/Kiritimati", "Pacific/Pago_Pago"]


def zone(name):
    return zoneinfo.ZoneInfo(name)


def local(t, z):
    return t.astimezone(z).replace(tzinfo=None)


def transitions(z, start, end):
    """(instant, local wall time just before, local wall time at) of each offset change."""
    out = []
    t = start
    step = timedelta(minutes=15)
    prev = t.astimezone(z).utcoffset()
    while t < end:
        t2 = t + step
        off = t2.astimezone(z).utcoffset()
        if off != prev:
            lo, hi = t, t2
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid.astimezone(z).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, local(hi - timedelta(seconds=1), z) + timedelta(seconds=1),
                        local(hi, z)))
        prev = off
        t = t2
    return out


def first_instant_after(naive, z):
    """The first instant whose wall time is later than `naive` (the end of a gap)."""
    lo = int(naive.replace(tzinfo=UTC).timestamp()) - 26 * 3600
    hi = lo + 52 * 3600
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if local(datetime.fromtimestamp(mid, UTC), z) > naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def classify(naive, z):
    """("single", t) | ("overlap", first, second) | ("gap", end) for a wall time."""
    a = naive.replace(tzinfo=z, fold=0).astimezone(UTC)
    b = naive.replace(tzinfo=z, fold=1).astimezone(UTC)
    if local(a, z) != naive and local(b, z) != naive:
        return ("gap", first_instant_after(naive, z))
    if a != b:
        return ("overlap", min(a, b), max(a, b))
    return ("single", a)


def instants(naive, z, wildcard_hours):
    """Our documented rules for one wall-clock match."""
    c = classify(naive, z)
    if c[0] == "single":
        return [c[1]]
    if c[0] == "overlap":
        return [c[1], c[2]] if wildcard_hours else [c[1]]
    return [] if wildcard_hours else [c[1]]


def wildcard_hours(expr):
    return expr.split()[1].startswith("*")


@lru_cache(maxsize=None)
def wall_matches(expr):
    """croniter's wall-clock matches of `expr` from two days before the window to the first
    one more than two days after it. Naive datetimes are calendar arithmetic alone, the same
    in every zone, so a worker finds them once per expression, not once per zone (they were
    half of the check's time; `--check` shows the fixtures come out the same)."""
    lo = WINDOW[0].replace(tzinfo=None) - timedelta(days=2)
    hi = WINDOW[1].replace(tzinfo=None) + timedelta(days=2)
    it = croniter(expr, lo)
    out = []
    while not out or out[-1] <= hi:
        out.append(it.get_next(datetime))
    return out


def expected(expr, z):
    start, end = WINDOW
    wild = wildcard_hours(expr)
    # The wall-clock matches within a day of the window in this zone (offsets are under a
    # day, so the instants of any other match fall outside it).
    first, last = local(start, z) - timedelta(days=1), local(end, z) + timedelta(days=1)
    out = set()
    for n in wall_matches(expr):
        if n <= first:
            continue
        if n > last:
            break
        for t in instants(n, z, wild):
            if start < t <= end:
                out.add(t)
    return sorted(out)


def by_croniter(expr, z):
    start, end = WINDOW
    it = croniter(expr, start.astimezone(z))
    out = []
    while True:
        t = it.get_next(datetime).astimezone(UTC)
        if t > end:
            break
        out.append(t)
    return out


def around_transitions(z):
    """Daily fixed times just before, at, inside and after each gap and overlap."""
    exprs = []
    for _, before, at in transitions(z, *WINDOW):
        lo, hi = min(before, at), max(before, at)
        mid = lo + (hi - lo) / 2
        for t in [lo - timedelta(minutes=1), lo, mid, hi - timedelta(minutes=1), hi,
                  hi + timedelta(minutes=1)]:
            e = f"{t.minute} {t.hour} * * *"
            if e not in exprs and e not in COMMON:
                exprs.append(e)
    return exprs


def encode(ts):
    """[first epoch second, [[deltas...], repeat], ...]: the gaps between instants, with
    runs of a repeated block folded (a year of a daily */10 is a few dozen numbers)."""
    if not ts:
        return []
    secs = [int(t.timestamp()) for t in ts]
    deltas = [b - a for a, b in zip(secs, secs[1:])]
    out = [secs[0]]
    i = 0
    while i < len(deltas):
        best = (1, 1)
        for k in range(1, 9):
            block = deltas[i:i + k]
            if len(block) < k:
                break
            n = 1
            while deltas[i + n * k:i + (n + 1) * k] == block:
                n += 1
            if n * k > best[0] * best[1] and n > 1:
                best = (k, n)
        k, n = best
        block = deltas[i:i + k]
        if n == 1 and len(out) > 1 and out[-1][1] == 1:
            out[-1][0].extend(block)  # a stretch without repeats: one list
        else:
            out.append([block, n])
        i += k * n
    return out


def decode(enc):
    if not enc:
        return []
    t = enc[0]
    out = [t]
    for block, n in enc[1:]:
        for _ in range(n):
            for d in block:
                t += d
                out.append(t)
    return out


def cron_zone(name):
    z = zone(name)
    cases = []
    common = [e for e in COMMON if e not in BUSINESS_HOURS or name in BUSINESS_HOURS[e]]
    for expr in common + around_transitions(z):
        exp = expected(expr, z)
        cro = by_croniter(expr, z)
        assert decode(encode(exp)) == [int(t.timestamp()) for t in exp]
        cases.append({"zone": name, "expr": expr, "expected": encode(exp),
                      "croniter": encode(cro) if cro != exp else "same"})
    return cases


def anniversary_instant(birth, year, at, z, leap):
    try:
        day = birth.replace(year=year)
    except ValueError:  # Feb 29 in a common year
        day = date(year, 2, 28) if leap == "feb28" else date(year, 3, 1)
    naive = datetime(day.year, day.month, day.day, int(at[:2]), int(at[3:]))
    c = classify(naive, z)
    # Greetings: the earlier pass of a repeated hour; a time a gap swallowed, its end.
    return c[1]


def anniversaries():
    cases = []
    span = (datetime(2027, 1, 1, tzinfo=UTC), datetime(2029, 1, 2, tzinfo=UTC))
    for name in ANNIVERSARY_ZONES:
        z = zone(name)
        days = set()
        for _, before, at in transitions(z, *span):
            for d in (before.date(), at.date(), (before - timedelta(seconds=1)).date()):
                if 2027 <= d.year <= 2028:
                    days.add(d)
        births = sorted({date(1990, d.month, d.day) for d in days if (d.month, d.day) != (2, 29)})
        births += [date(1992, 2, 29), date(1991, 2, 28), date(1991, 3, 1)]
        for birth in births:
            for leap in ("feb28", "mar1"):
                if leap == "mar1" and (birth.month, birth.day) != (2, 29):
                    continue
                # fire[i] = [2027, 2028] for ANNIVERSARY_AT[i], epoch seconds
                fire = [[int(anniversary_instant(birth, y, at, z, leap).timestamp())
                         for y in (2027, 2028)] for at in ANNIVERSARY_AT]
                cases.append({"zone": name, "birth": birth.isoformat(), "leap_day": leap,
                              "fire": fire})
    return cases


def main():
    zoneinfo.reset_tzpath(to=())  # the tzdata package, not the machine's files
    import tzdata
    if tzdata.IANA_VERSION != TZDATA:
        sys.exit(f"tzdata {tzdata.IANA_VERSION} installed; this fixture is for {TZDATA} "
                 f"(chrono-tz 0.10.4): python3 -m pip install tzdata==2025.2")
    with ProcessPoolExecutor(initializer=zoneinfo.reset_tzpath, initargs=((),)) as pool:
        cron_cases = [c for cases in pool.map(cron_zone, ZONES) for c in cases]
    files = {
        "cron.json": {
            "about": "tests/dst/generate.py: croniter " + version("croniter")
                     + ", tzdata " + TZDATA,
            "window": [int(WINDOW[0].timestamp()), int(WINDOW[1].timestamp())],
            "cases": cron_cases,
        },
        "anniversaries.json": {
            "about": "tests/dst/generate.py: zoneinfo, tzdata " + TZDATA,
            "at": ANNIVERSARY_AT,
            "cases": anniversaries(),
        },
    }
    check = "--check" in sys.argv[1:]
    stale = []
    for name, data in files.items():
        text = json.dumps(data, separators=(",", ":")).replace('},{', '},\n{') + "\n"
        path = os.path.join(HERE, name)
        if check:
            with open(path) as f:
                if f.read() != text:
                    stale.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        sys.exit(f"tests/dst/{', '.join(stale)} differ from what croniter and zoneinfo "
                 "compute today: run python3 tests/dst/generate.py and review the diff")
    n = sum(len(decode(c["expected"])) for c in cron_cases)
    print(f"{len(cron_cases)} cron cases in {len(ZONES)} zones ({n} occurrences), "
          f"{len(files['anniversaries.json']['cases']) * len(ANNIVERSARY_AT) * 2} anniversaries"
          + (" : fixtures up to date" if check else ""))


if __name__ == "__main__":
    main()
