/*
 * Canonical JSON and the three signed documents: every input goes through the canonical
 * loader/dumper and the manifest, channel state and policy parsers. Whatever parses must
 * encode, the encoding must parse again to the same canonical bytes, be reported canonical,
 * and an input already canonical must come back byte for byte (the bytes signed are the bytes
 * stored).
 */
#include "fuzz_util.h"
#include "schema/schema.h"
#include "schema/schema_internal.h"

static void check_json(const char *buf, size_t len)
{
    json_t *first = NULL, *second = NULL;
    char *out = NULL, *again = NULL;
    size_t out_len = 0, again_len = 0;
    int err;

    imgstore_error_clear();
    err = imgstore_schema__load(&first, "fuzz", buf, len, 1024 * 1024);
    FUZZ_CHECK_FAILURE_SAYS_WHY(err);
    if (err < 0)
        return;
    if (imgstore_schema__dump(&out, &out_len, first, "fuzz", 4 * 1024 * 1024) == 0) {
        FUZZ_CHECK(imgstore_schema__load(&second, "fuzz", out, out_len, 4 * 1024 * 1024) == 0);
        FUZZ_CHECK(imgstore_schema__dump(&again, &again_len, second, "fuzz", 4 * 1024 * 1024) == 0);
        FUZZ_CHECK(again_len == out_len && memcmp(again, out, out_len) == 0);
        FUZZ_CHECK(json_equal(first, second));
    }
    free(again);
    free(out);
    json_decref(second);
    json_decref(first);
}

/* One document kind: parse, encode, parse the encoding, encode again, compare. */
#define ROUND_TRIP(type, parse, encode, is_canonical, to_json, free_fn)                            \
    do {                                                                                           \
        type *doc = NULL, *again = NULL;                                                           \
        char *out = NULL, *out2 = NULL;                                                            \
        size_t out_len = 0, out2_len = 0;                                                          \
        json_t *view;                                                                              \
        int err;                                                                                   \
                                                                                                   \
        imgstore_error_clear();                                                                    \
        err = parse(&doc, buf, len);                                                               \
        FUZZ_CHECK_FAILURE_SAYS_WHY(err);                                                          \
        if (err < 0) {                                                                             \
            FUZZ_CHECK(doc == NULL);                                                               \
            break;                                                                                 \
        }                                                                                          \
        FUZZ_CHECK(encode(&out, &out_len, doc) == 0);                                              \
        FUZZ_CHECK(strlen(out) == out_len);                                                        \
        FUZZ_CHECK(is_canonical(out, out_len));                                                    \
        FUZZ_CHECK(parse(&again, out, out_len) == 0);                                              \
        FUZZ_CHECK(encode(&out2, &out2_len, again) == 0);                                          \
        FUZZ_CHECK(out2_len == out_len && memcmp(out2, out, out_len) == 0);                        \
        if (is_canonical(buf, len))                                                                \
            FUZZ_CHECK(len == out_len && memcmp(buf, out, len) == 0);                              \
        FUZZ_CHECK((view = to_json(doc)) != NULL);                                                 \
        json_decref(view);                                                                         \
        free(out2);                                                                                \
        free(out);                                                                                 \
        free_fn(again);                                                                            \
        free_fn(doc);                                                                              \
    } while (0)

/* channel_is_canonical: schema.h has none, so compare with a fresh encoding. */
static bool channel_is_canonical(const char *buf, size_t len)
{
    imgstore_channel_state *state = NULL;
    char *out = NULL;
    size_t out_len = 0;
    bool same = false;

    if (imgstore_schema_channel_parse(&state, buf, len) == 0 &&
        imgstore_schema_channel_encode(&out, &out_len, state) == 0)
        same = out_len == len && memcmp(out, buf, len) == 0;
    free(out);
    imgstore_channel_state_free(state);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t len = size;

    check_json(buf, len);
    ROUND_TRIP(imgstore_manifest, imgstore_schema_manifest_parse, imgstore_schema_manifest_encode,
               imgstore_schema_manifest_is_canonical, imgstore_schema_manifest_to_json,
               imgstore_manifest_free);
    ROUND_TRIP(imgstore_channel_state, imgstore_schema_channel_parse,
               imgstore_schema_channel_encode, channel_is_canonical,
               imgstore_schema_channel_to_json, imgstore_channel_state_free);
    ROUND_TRIP(imgstore_policy, imgstore_schema_policy_parse, imgstore_schema_policy_encode,
               imgstore_schema_policy_is_canonical, imgstore_schema_policy_to_json,
               imgstore_policy_free);
    return 0;
}
