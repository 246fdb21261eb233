#!/usr/bin/env python3
"""Writes the malformed-input corpus that tests/corpus.rs runs: broken job files under jobs/
and bad events in events/bad.jsonl, each with its expected place in a MANIFEST.

Run it again after changing a case here (python3 tests/corpus/make.py); the files it writes
are committed. Cases too large to commit (a file over the 1 MiB limit, a 10 MiB event line,
nesting thousands deep) are made by tests/corpus.rs itself.

jobs/MANIFEST:   file <TAB> line[:col] <TAB> a piece of the message
events/MANIFEST: line <TAB> field (- for the whole line) <TAB> a piece of the message
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = os.path.join(HERE, "jobs")
EVENTS = os.path.join(HERE, "events")

GOOD_EVENT = (
    "id: ev\n"
    "description: a job\n"
    "enabled: true\n"
    "trigger:\n"
    "  event: order.delivered\n"
    "  delay: 3d\n"
    "template: review_request\n"
    "channels: [email]\n"
    "class: marketing\n"
    "dedupe: \"{{event.data.order_id}}\"\n"
    "reminders:\n"
    "  - after: 4d\n"
    "    template: review_reminder\n"
    "stop_when:\n"
    "  event: review.submitted\n"
    "  match: [order_id]\n"
    "expire_after: 7d\n"
    "send_window: {start: \"09:00\", end: \"20:00\"}\n"
    "over_cap: defer\n"
    "audience:\n"
    "  where:\n"
    "    contact.attributes.tier: gold\n"
)
GOOD_BIRTHDAY = (
    "id: bd\n"
    "trigger:\n"
    "  anniversary: contact.birthday\n"
    "  at: \"09:00\"\n"
    "  leap_day: feb28\n"
    "template: birthday_greeting\n"
)
GOOD_CRON = (
    "id: cr\n"
    "trigger:\n"
    "  cron: \"0 10 * * MON\"\n"
    "  timezone: Asia/Shanghai\n"
    "  missed: run_once\n"
    "audience:\n"
    "  had_event: rental.completed\n"
    "  within: 30d\n"
    "  exclude_if_sent: {job: nps-survey, within: 90d}\n"
    "template: nps_survey\n"
    "channels: [email, sms]\n"
    "sms:\n"
    "  gateways: [aliyun]\n"
    "  template_codes: {nps_survey: SMS_1}\n"
    "  max_segments: 2\n"
)

jobs = []  # (name, bytes, where, message piece)


def job(name, data, where, piece):
    if isinstance(data, str):
        data = data.encode()
    jobs.append((name, data, where, piece))


def misspell(base, key, wrong):
    """`base` with the first `key:` (at any indent) written as `wrong:`; its line."""
    lines = base.split("\n")
    for i, l in enumerate(lines):
        stripped = l.lstrip(" -")
        if stripped.startswith(key + ":") or stripped.startswith("{" + key + ":"):
            lines[i] = l.replace(key + ":", wrong + ":", 1)
            return "\n".join(lines), i + 1
        if ("{" + key + ":") in l or (" " + key + ":") in l:
            lines[i] = l.replace(key + ":", wrong + ":", 1)
            return "\n".join(lines), i + 1
    raise SystemExit(f"no {key} in base")


# Every key misspelt, one file each: the error is at the misspelt key's line.
for base_name, base, keys in [
    ("event", GOOD_EVENT, [
        ("id", "idd"), ("description", "descripton"), ("enabled", "enbled"),
        ("trigger", "triger"), ("event", "evnt"), ("delay", "dealy"),
        ("template", "templat"), ("channels", "chanels"), ("class", "clas"),
        ("dedupe", "dedup"), ("reminders", "reminder"), ("after", "aftr"),
        ("stop_when", "stop_wen"), ("match", "mach"), ("expire_after", "expire_afer"),
        ("send_window", "send_windw"), ("start", "strt"), ("over_cap", "over_capp"),
        ("audience", "audiense"), ("where", "were"),
    ]),
    ("birthday", GOOD_BIRTHDAY, [("anniversary", "aniversary"), ("at", "att"), ("leap_day", "leapday")]),
    ("cron", GOOD_CRON, [
        ("cron", "cronn"), ("timezone", "timezon"), ("missed", "missd"),
        ("had_event", "had_evnt"), ("within", "withn"), ("exclude_if_sent", "exclude_if_snt"),
        ("sms", "smss"), ("gateways", "gateway"), ("template_codes", "template_code"),
        ("max_segments", "max_segment"),
    ]),
]:
    for key, wrong in keys:
        text, line = misspell(base, key, wrong)
        job(f"misspelt-{base_name}-{key}.yaml", text, str(line), f"unknown field `{wrong}`")

# Encodings and byte order marks.
job("bom-then-misspelt.yaml", b"\xef\xbb\xbfid: a\ntriger: {event: order.delivered}\n", "2:1", "unknown field `triger`")
job("utf16le.yaml", "\ufeffid: a\n".encode("utf-16-le"), "1:1", "is not UTF-8 text")
job("utf16be.yaml", "\ufeffid: a\n".encode("utf-16-be"), "1:1", "is not UTF-8 text")
job("latin1.yaml", b"id: a\ndescription: caf\xe9\n", "2:17", "byte 0xE9 is not UTF-8 text")
job("overlong-utf8.yaml", b"id: a\ntemplate: x\ndescription: \xc0\xaf\n", "3:14", "byte 0xC0 is not UTF-8")
job("truncated-utf8.yaml", b"id: a\ndescription: \xe4\xb8", "2:14", "byte 0xE4 is not UTF-8")
job("bom-mid-file.yaml", b"id: a\n\xef\xbb\xbftrigger: {event: order.delivered}\n", "2:1", "byte order mark")
# Control characters, raw.
for name, ch, col in [("nul", b"\x00", 15), ("soh", b"\x01", 15), ("vt", b"\x0b", 15),
                      ("esc", b"\x1b", 15), ("del", b"\x7f", 15), ("ufffe", "\ufffe".encode(), 15),
                      ("c1-csi", "\x9b".encode(), 15), ("nel", "\x85".encode(), 15),
                      ("formfeed", b"\x0c", 15), ("bell", b"\x07", 15)]:
    job(f"control-{name}.yaml", b"id: a\ndescription: x" + ch + b"y\n", f"2:{col}", "is not allowed in YAML")
# Empty and null.
job("empty.yaml", b"", "1:1", "holds no job")
job("comments-only.yaml", "# a job will go here\n\n# later\n", "1:1", "holds no job")
job("separators-only.yaml", "---\n---\n", "1:1", "holds no job")
job("tilde.yaml", "~\n", "1:1", "this document is null")
job("null-word.yaml", "null\n", "1:1", "this document is null")
job("null-second-document.yaml", GOOD_BIRTHDAY + "---\nnull\n", "8:1", "this document is null")
# Wrong shapes and types.
job("root-list.yaml", "- id: a\n  trigger: {event: order.delivered}\n", "1:1", "invalid type: sequence")
job("root-scalar.yaml", "review request every day\n", "1:1", "invalid type: string")
job("id-list.yaml", "id: [a, b]\ntrigger: {event: order.delivered}\ntemplate: review_request\n", "1:5", "invalid type: sequence")
job("trigger-string.yaml", "id: a\ntrigger: order.delivered\ntemplate: review_request\n", "2:10", "invalid type: string")
job("reminders-map.yaml", "id: a\ntrigger: {event: order.delivered}\ntemplate: review_request\nreminders: {after: 1d}\n", "4:12", "invalid type: map")
job("enabled-string.yaml", "id: a\nenabled: maybe\ntrigger: {event: order.delivered}\ntemplate: review_request\n", "2:10", "invalid type: string")
job("channels-string.yaml", "id: a\ntrigger: {event: order.delivered}\ntemplate: review_request\nchannels: email\n", "4:11", "invalid type: string")
job("delay-number.yaml", "id: a\ntrigger: {event: order.delivered, delay: 3}\ntemplate: review_request\n", "2:42", "without a unit")
job("delay-overflow.yaml", "id: a\ntrigger: {event: order.delivered, delay: 99999999999999999999w}\ntemplate: review_request\n", "2:42", "trigger.delay")
job("cron-bad.yaml", "id: a\ntrigger: {cron: \"61 * * * *\"}\ntemplate: nps_survey\n", "2:17", "is not a cron expression")
job("timezone-bad.yaml", "id: a\ntrigger: {cron: \"0 10 * * MON\", timezone: Mars/Base}\ntemplate: nps_survey\n", "2:43", "trigger.timezone")
job("class-unknown.yaml", "id: a\ntrigger: {event: order.delivered}\ntemplate: review_request\nclass: spam\n", "4:8", "unknown variant `spam`")
# Structure: duplicates, quotes, brackets, indentation.
job("duplicate-key.yaml", "id: a\ntrigger: {event: order.delivered}\ntemplate: review_request\nid: b\n", "4:1", "duplicate key `id`")
job("duplicate-nested-key.yaml", "id: a\ntrigger:\n  event: order.delivered\n  delay: 1d\n  event: order.shipped\ntemplate: review_request\n", "5:3", "duplicate key `event`")
job("unclosed-double-quote.yaml", "id: a\ndescription: \"never closed\ntrigger: {event: order.delivered}\ntemplate: review_request\n", "2:14", "not closed")
job("unclosed-single-quote.yaml", "id: a\ntrigger: {event: order.delivered}\ntemplate: 'review_request\n", "3:11", "not closed")
job("unclosed-flow-mapping.yaml", "id: a\ntrigger: {event: order.delivered\ntemplate: review_request\n", "3:9", "did not find expected ',' or '}'")
job("unclosed-flow-sequence.yaml", "id: a\ntrigger: {event: order.delivered}\nchannels: [email\ntemplate: review_request\n", "4:9", "did not find expected ',' or ']'")
job("tab-indent.yaml", "id: a\ntrigger:\n\tevent: order.delivered\ntemplate: review_request\n", "3:1", "tab")
job("bad-indent.yaml", "id: a\ntrigger:\n    event: order.delivered\n  delay: 1d\ntemplate: review_request\n", "4:3", "")
# Anchors and aliases.
job("alias-unknown.yaml", "id: a\ntrigger: *nope\ntemplate: review_request\n", "2:10", "")
bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
for prev, cur in zip("abcd", "bcde"):
    bomb += f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
job("alias-bomb.yaml", bomb, "5:36", "alias bomb")
quad = "a: &a [" + ", ".join(["x"] * 300) + "]\nb: [" + ", ".join(["*a"] * 400) + "]\n"
job("alias-wide.yaml", quad, "2:", "alias bomb")
job("trigger-event-and-cron.yaml", "id: a\ntrigger:\n  event: order.delivered\n  cron: \"0 10 * * MON\"\ntemplate: review_request\n", "4:3", "given with `event`")
job("trigger-anniversary-and-event.yaml", "id: a\ntrigger: {anniversary: contact.birthday, event: order.delivered}\ntemplate: review_request\n", "2:42", "given with `anniversary`")
job("deep-flow-nesting.yaml", "id: a\ndescription: " + "[" * 100 + "]" * 100 + "\n", "2:78", "nesting deeper than 64")
job("long-implicit-key.yaml", "id: a\n" + "k" * 2000 + ": 1\n", "2:2001", "could not find expected ':'")
job("long-explicit-key.yaml", "id: a\n? " + "k" * 2000 + "\n: 1\n", "2:3", "a key of more than 1024 characters")

# Events: one per line; `-` is a line-level problem (not JSON, too long, not UTF-8).
events = []  # (bytes, field, piece)
base = {
    "id": "e", "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
    "contact": {"id": "c-1", "name": "Wang Fang", "email": "wang@example.com", "phone": "+8613800138000",
                "locale": "zh-CN", "timezone": "Asia/Shanghai", "birthday": "1990-02-28",
                "attributes": {"tier": "gold"}, "consent": {"email": True}},
    "data": {"order_id": "SO-1"},
}


def ev(field, piece, **changes):
    v = json.loads(json.dumps(base))
    for path, value in changes.items():
        parts = path.split("__")
        slot = v
        for p in parts[:-1]:
            slot = slot[p]
        if value is DELETE:
            del slot[parts[-1]]
        else:
            slot[parts[-1]] = value
    events.append((json.dumps(v, ensure_ascii=True).encode(), field, piece))


def raw(line, field, piece):
    events.append((line if isinstance(line, bytes) else line.encode(), field, piece))


DELETE = object()
NUL = "stored"  # the NUL message piece: "...which cannot be stored"
# NUL anywhere.
ev("id", NUL, id="e\u0000")
ev("type", NUL, type="order.delivered\u0000")
ev("contact.id", NUL, contact__id="c\u0000")
ev("contact.name", NUL, contact__name="Eve\u0000")
ev("contact.email", NUL, contact__email="a\u0000@example.com")
ev("data.note", NUL, data={"order_id": "SO-1", "note": "\u0000"})
ev("data.items[2]", NUL, data={"order_id": "SO-1", "items": ["a", "b", "c\u0000"]})
ev("data", NUL, data={"order_id": "SO-1", "k\u0000": 1})
ev("contact.attributes.tier", NUL, contact__attributes={"tier": "\u0000gold"})
ev("contact.consent", NUL, contact__consent={"em\u0000ail": True})
# Encodings and bytes.
raw(b'{"id":"caf\xe9"}', "-", "not UTF-8 text at column 11")
raw("\ufeff".encode() + json.dumps(base).encode(), "-", "not valid JSON")
raw(json.dumps(base).encode("utf-16-le"), "-", "not valid JSON")
raw(b'{"id":"a\x00b"}', "-", "not valid JSON")
raw(b'{"id":"\\ud800"}', "-", "not valid JSON")
raw(b'{"id":"a\x1b[2Jb"}', "-", "not valid JSON")
# JSON shapes.
raw("{not json", "-", "not valid JSON")
raw("[1, 2]", "-", "an event must be a JSON object")
raw("null", "-", "an event must be a JSON object")
raw("42", "-", "an event must be a JSON object")
raw(json.dumps(base) + " trailing", "-", "not valid JSON")
raw(json.dumps(base)[:-5], "-", "not valid JSON")
raw('{"id":"e","data":' + "[" * 200 + "]" * 200 + "}", "-", "recursion limit")
raw('{"id":"e","data":{"n":1e400}}', "-", "not valid JSON")
# Wrong types.
ev("id", "must be a string", id=5)
ev("type", "must be a string", type=["order.delivered"])
ev("occurred_at", "must be a string", occurred_at=1700000000)
ev("contact", "must be a JSON object", contact="c-1")
ev("contact", "must be a JSON object", contact=["c-1"])
ev("data", "must be a JSON object", data=["SO-1"])
ev("data", "must be a JSON object", data="SO-1")
ev("contact.attributes", "must be a JSON object", contact__attributes="gold")
ev("contact.consent.email", "must be true or false", contact__consent={"email": "yes"})
ev("contact.consent", "must be a JSON object", contact__consent=[True])
ev("contact.birthday", "must be a string", contact__birthday=19900228)
ev("contact.email", "must be a string", contact__email=True)
# Missing and empty.
ev("id", "missing", id=DELETE)
ev("type", "missing", type=DELETE)
ev("occurred_at", "missing", occurred_at=DELETE)
ev("contact", "missing", contact=DELETE)
ev("contact.id", "missing", contact__id=DELETE)
ev("id", "must not be empty", id="")
ev("type", "must not be empty", type="   ")
ev("contact.id", "must not be empty", contact__id="")
ev("contact.email", "must not be empty", contact__email="")
ev("contact.locale", "must not be empty", contact__locale="")
ev("contact.timezone", "must not be empty", contact__timezone=" ")
# Every key misspelt.
for key, wrong in [("id", "idd"), ("type", "typ"), ("occurred_at", "occured_at"), ("data", "dta")]:
    v = json.loads(json.dumps(base))
    v[wrong] = v.pop(key)
    events.append((json.dumps(v).encode(), wrong, "unknown field"))
for key, wrong in [("name", "nme"), ("email", "emial"), ("phone", "phon"), ("locale", "locle"),
                   ("timezone", "timezon"), ("birthday", "birthdy"), ("attributes", "atributes"),
                   ("consent", "consnt")]:
    v = json.loads(json.dumps(base))
    v["contact"][wrong] = v["contact"].pop(key)
    events.append((json.dumps(v).encode(), f"contact.{wrong}", "unknown field"))
v = json.loads(json.dumps(base))
v["contct"] = v.pop("contact")
events.append((json.dumps(v).encode(), "contct", "unknown field"))
# Values.
ev("contact.email", "not a valid email address", contact__email="a@b")
ev("contact.email", "not a valid email address", contact__email="wang@")
ev("contact.email", "longer than 254", contact__email="a" * 250 + "@example.com")
ev("contact.locale", "not a language tag", contact__locale="english!")
ev("contact.timezone", "unknown time zone", contact__timezone="Mars/Base")
ev("contact.phone", "needs a country code", contact__phone="13800138000")
ev("contact.phone", "not a", contact__phone="+1 000")
ev("contact.birthday", "YYYY-MM-DD", contact__birthday="1990-2-3")
ev("contact.birthday", "YYYY-MM-DD", contact__birthday="+20000-01-01")
ev("contact.birthday", "YYYY-MM-DD", contact__birthday="1990-02-30")
ev("occurred_at", "RFC 3339", occurred_at="2026-11-20 10:00")
ev("occurred_at", "1970 to 2199", occurred_at="0000-01-01T00:00:00Z")
ev("occurred_at", "1970 to 2199", occurred_at="9999-12-31T23:59:59Z")
ev("occurred_at", "1970 to 2199", occurred_at="1969-12-31T00:00:00Z")
ev("type", "not an event type", type="Order Delivered")
ev("type", "not an event type", type="order..delivered")
ev("id", "longer than 200", id="e" * 201)
ev("contact.id", "longer than 200", contact__id="c" * 201)
ev("data.order_id", "longer than 200", data={"order_id": "S" * 201})

GOOD_LINE = json.dumps(dict(base, id="good-{}", contact=dict(base["contact"], id="good-{}")))


def write():
    os.makedirs(JOBS, exist_ok=True)
    os.makedirs(EVENTS, exist_ok=True)
    for f in os.listdir(JOBS):
        os.remove(os.path.join(JOBS, f))
    manifest = []
    for name, data, where, piece in jobs:
        with open(os.path.join(JOBS, name), "wb") as f:
            f.write(data)
        manifest.append(f"{name}\t{where}\t{piece}")
    with open(os.path.join(JOBS, "MANIFEST"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    lines, manifest = [], []
    for i, (line, field, piece) in enumerate(events):
        # A good event between bad ones: it must be accepted, and the line numbers counted.
        lines.append(GOOD_LINE.replace("{}", str(i)).encode())
        lines.append(line)
        manifest.append(f"{len(lines)}\t{field}\t{piece}")
    with open(os.path.join(EVENTS, "bad.jsonl"), "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    with open(os.path.join(EVENTS, "MANIFEST"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print(f"{len(jobs)} job files, {len(events)} bad events")


write()
