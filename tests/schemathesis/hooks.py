"""Schemathesis hooks for aftercare's OpenAPI document (loaded by tests/openapi.rs through
SCHEMATHESIS_HOOKS).

`Contact.phone` has the custom format `phone`: an international number that exists for its
country, which libphonenumber checks and no JSON Schema pattern can say. Its values are
generated here from a number range libphonenumber holds valid (mainland China mobiles 13x,
18x) and from libphonenumber's own example numbers.
"""

import schemathesis
from hypothesis import strategies as st

PHONES = st.one_of(
    # Mainland China mobiles: every 13x and 18x number is valid.
    st.from_regex(r"\A\+861[38][0-9]{9}\Z"),
    # libphonenumber's own example numbers (valid by definition), written in several ways.
    st.sampled_from(
        [
            "+12015550123",
            "+1 201-555-0123",
            "+447400123456",
            "+44 7400 123456",
            "+4915123456789",
            "+819012345678",
            "+8613800138000",
            "+86 138 0013 8000",
        ]
    ),
)

schemathesis.openapi.format("phone", PHONES)


@schemathesis.hook
def map_query(ctx, query):
    """`GET /v1/reports/daily` refuses a `since` after its `until` (400, naming `since`; the
    default `until` is today, UTC), which no JSON Schema can say: generated days are put in
    order, so that every case the schema allows is one the API must answer."""
    op = getattr(ctx, "operation", None)
    if not query or op is None or op.path != "/v1/reports/daily":
        return query
    since, until = query.get("since"), query.get("until")
    if not isinstance(since, str):
        return query
    if isinstance(until, str):
        if since > until:
            query["since"], query["until"] = until, since
    else:
        import datetime

        if since > datetime.datetime.now(datetime.timezone.utc).date().isoformat():
            query["until"] = since
    return query
