#!/usr/bin/env python3
"""A second, independent reader of loadgen's --hlog files (the first is the hdrhistogram crate's
interval log iterator, in the Rust tests). It decodes the HdrHistogram V2 compressed encoding
itself (zlib + ZigZag LEB128 counts, as the Java HistogramLogReader does; nothing from the Rust
side is reused), sums every tag's intervals and compares each sum with the loadgen JSON report's
end-of-run histogram of the same name, decoded the same way: total count, min, max and the
count at every recorded value must be equal.

Usage: hlog_check.py LOG.hlog REPORT.json   (exit 0: equal, 1: different, 2: unreadable)
"""
import base64
import json
import struct
import sys
import zlib

COMPRESSED_COOKIE = 0x1C849304
ENCODING_COOKIE = 0x1C849303
TAG_TO_REPORT = {"connect": "connect", "first-echo": "first_echo", "echo": "echo"}


def zigzag_leb128(data, pos):
    """One ZigZag LEB128 64-bit value at data[pos:], and the position after it."""
    value = shift = 0
    for i in range(9):
        b = data[pos]
        pos += 1
        # The 9th byte contributes all 8 bits.
        value |= (b if i == 8 else b & 0x7F) << shift
        if i == 8 or not b & 0x80:
            break
        shift += 7
    return (value >> 1) ^ -(value & 1), pos


def bucket_value(index, sub_bucket_half_count_magnitude, unit_magnitude):
    """The lowest value of counts-array slot `index` (HdrHistogram's valueFromIndex)."""
    sub_bucket_half_count = 1 << sub_bucket_half_count_magnitude
    bucket = (index >> sub_bucket_half_count_magnitude) - 1
    sub_bucket = (index & (sub_bucket_half_count - 1)) + sub_bucket_half_count
    if bucket < 0:
        sub_bucket -= sub_bucket_half_count
        bucket = 0
    return sub_bucket << (bucket + unit_magnitude)


def decode(b64):
    """{lowest value of slot: count} of one base64 V2 compressed histogram."""
    raw = base64.b64decode(b64)
    cookie, length = struct.unpack(">ii", raw[:8])
    if cookie & ~0xF0 != COMPRESSED_COOKIE:
        raise ValueError(f"not a compressed V2 histogram (cookie {cookie:#x})")
    inner = zlib.decompress(raw[8 : 8 + length])
    cookie, payload_len, _norm, sigfig, lowest, _highest, _ratio = struct.unpack(
        ">iiiiqqd", inner[:40]
    )
    if cookie & ~0xF0 != ENCODING_COOKIE:
        raise ValueError(f"not a V2 encoding (cookie {cookie:#x})")
    unit_magnitude = (lowest.bit_length() - 1) if lowest > 0 else 0
    largest_single_unit = 2 * 10**sigfig
    sub_bucket_count_magnitude = (largest_single_unit - 1).bit_length()
    sub_bucket_half_count_magnitude = max(sub_bucket_count_magnitude, 1) - 1
    counts = {}
    payload, pos, index = inner[40 : 40 + payload_len], 0, 0
    while pos < len(payload):
        n, pos = zigzag_leb128(payload, pos)
        if n < 0:
            index += -n  # a run of empty slots
            continue
        if n:
            value = bucket_value(index, sub_bucket_half_count_magnitude, unit_magnitude)
            counts[value] = counts.get(value, 0) + n
        index += 1
    return counts


def read_log(path):
    """{tag: summed counts} over every interval line of the log, and the number of intervals."""
    sums, intervals = {}, 0
    with open(path) as f:
        for line in f:
            if not line.startswith("Tag="):
                continue
            tag, _start, _length, _max, b64 = line.strip()[4:].split(",")
            intervals += 1
            total = sums.setdefault(tag, {})
            for value, n in decode(b64).items():
                total[value] = total.get(value, 0) + n
    return sums, intervals


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        sums, intervals = read_log(sys.argv[1])
        with open(sys.argv[2]) as f:
            latency = json.load(f)["latency"]
    except (OSError, ValueError, KeyError, zlib.error, struct.error) as e:
        print(f"hlog_check: {e}", file=sys.stderr)
        return 2
    bad = 0
    for tag, name in TAG_TO_REPORT.items():
        from_log = sums.get(tag, {})
        from_report = decode(latency[name]["hdr"])
        n = sum(from_log.values())
        if from_log != from_report or n != latency[name]["count"]:
            print(f"hlog_check: {tag}: the intervals hold {n} values, the report {latency[name]['count']}; they differ")
            bad += 1
        else:
            low, high = (min(from_log), max(from_log)) if from_log else (0, 0)
            print(f"hlog_check: {tag}: {n} values over {intervals // 3} intervals, {low}..{high} us, equal to the report")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
