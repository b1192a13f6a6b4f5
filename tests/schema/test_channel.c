/*
 * Channel states: canonical bytes (a golden string), round trips, optional fields left out,
 * every validation rule refused with the field's name, and schema/channel.schema.json in
 * step with what encode writes.
 */
#include "schema/schema.h"
#include "schema_test_util.h"

#include <stdio.h>

static const char golden[] = "{\"action\":\"rollback\",\"actor\":\"alice\","
                             "\"channel\":\"prod\",\"expires\":\"2026-12-01T00:00:00Z\","
                             "\"manifest_sha256\":\"" SHA_A "\",\"name\":\"app\","
                             "\"previous_version\":\"1.1.0\",\"reason\":\"bad \\\"1.1\\\"\","
                             "\"schema\":\"imgstore.channel/1\",\"sequence\":7,"
                             "\"stack\":[\"1.1.0\",\"0.9\"],"
                             "\"time\":\"2026-11-25T13:51:00Z\",\"version\":\"1.0.0\"}";

static const char minimal[] = "{\"action\":\"deploy\",\"actor\":\"alice\",\"channel\":\"prod\","
                              "\"manifest_sha256\":\"" SHA_A "\",\"name\":\"app\","
                              "\"schema\":\"imgstore.channel/1\",\"sequence\":1,"
                              "\"time\":\"2026-11-25T13:51:00Z\",\"version\":\"1.0.0\"}";

static imgstore_channel_state *sample(void)
{
    imgstore_channel_state *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    s->name = dup("app");
    s->channel = dup("prod");
    s->version = dup("1.0.0");
    strcpy(s->manifest_sha256, SHA_A);
    s->sequence = 7;
    s->time = dup("2026-11-25T13:51:00Z");
    s->expires = dup("2026-12-01T00:00:00Z");
    s->actor = dup("alice");
    s->action = dup("rollback");
    s->reason = dup("bad \"1.1\"");
    s->previous_version = dup("1.1.0");
    s->has_stack = true;
    s->stack[0] = dup("1.1.0");
    s->stack[1] = dup("0.9");
    s->stack_count = 2;
    return s;
}

static void assert_encodes_to(const imgstore_channel_state *s, const char *expected)
{
    char *bytes = NULL;
    size_t len = 0;

    if (imgstore_schema_channel_encode(&bytes, &len, s) != 0)
        fail_msg("encode failed: %s", imgstore_error_last());
    assert_int_equal(len, strlen(expected));
    assert_string_equal(bytes, expected);
    free(bytes);
}

static void assert_encode_refused(const imgstore_channel_state *s, const char *message_part)
{
    char *bytes = NULL;
    size_t len = 0;

    assert_int_equal(imgstore_schema_channel_encode(&bytes, &len, s), IMGSTORE_EINVALID);
    assert_null(bytes);
    if (!strstr(imgstore_error_last(), message_part))
        fail_msg("message '%s' lacks '%s'", imgstore_error_last(), message_part);
}

static void encode_writes_golden_canonical_bytes(void **state)
{
    imgstore_channel_state *s = sample();

    (void)state;
    assert_encodes_to(s, golden);
    imgstore_channel_state_free(s);
}

static void round_trip_encode_parse_encode_is_identical(void **state)
{
    imgstore_channel_state *parsed = NULL;

    (void)state;
    assert_int_equal(imgstore_schema_channel_parse(&parsed, golden, strlen(golden)), 0);
    assert_string_equal(parsed->reason, "bad \"1.1\"");
    assert_int_equal(parsed->sequence, 7);
    assert_string_equal(parsed->manifest_sha256, SHA_A);
    assert_true(parsed->has_stack);
    assert_int_equal(parsed->stack_count, 2);
    assert_string_equal(parsed->stack[0], "1.1.0");
    assert_string_equal(parsed->stack[1], "0.9");
    assert_encodes_to(parsed, golden);
    imgstore_channel_state_free(parsed);
}

static void optional_fields_are_left_out_when_null(void **state)
{
    imgstore_channel_state *s = sample();
    imgstore_channel_state *parsed = NULL;

    (void)state;
    free(s->expires);
    free(s->reason);
    free(s->previous_version);
    s->expires = s->reason = s->previous_version = NULL;
    free(s->stack[0]);
    free(s->stack[1]);
    s->stack_count = 0;
    s->has_stack = false;
    s->sequence = 1;
    free(s->action);
    s->action = dup("deploy");
    assert_encodes_to(s, minimal);
    assert_int_equal(imgstore_schema_channel_parse(&parsed, minimal, strlen(minimal)), 0);
    assert_null(parsed->expires);
    assert_null(parsed->reason);
    assert_null(parsed->previous_version);
    assert_false(parsed->has_stack);
    imgstore_channel_state_free(parsed);
    imgstore_channel_state_free(s);
}

/* A known empty stack (a channel's first state) is [], so it is never mistaken for a legacy
 * state without one. */
static void empty_stack_is_written_and_read_as_known(void **state)
{
    imgstore_channel_state *s = sample();
    imgstore_channel_state *parsed = NULL;
    char *expected = replaced(golden, "\"stack\":[\"1.1.0\",\"0.9\"]", "\"stack\":[]");

    (void)state;
    free(s->stack[0]);
    free(s->stack[1]);
    s->stack_count = 0;
    assert_encodes_to(s, expected);
    assert_int_equal(imgstore_schema_channel_parse(&parsed, expected, strlen(expected)), 0);
    assert_true(parsed->has_stack);
    assert_int_equal(parsed->stack_count, 0);
    imgstore_channel_state_free(parsed);
    free(expected);
    imgstore_channel_state_free(s);
}

static void stack_holds_at_most_the_cap(void **state)
{
    imgstore_channel_state *s = sample();
    imgstore_channel_state *parsed = NULL;
    char *bytes = NULL, *text;
    size_t len = 0;
    char list[IMGSTORE_CHANNEL_STACK_MAX * 8 + 16];
    size_t used = 0;

    (void)state;
    for (size_t i = 2; i < IMGSTORE_CHANNEL_STACK_MAX; i++)
        s->stack[i] = dup("0.1");
    s->stack_count = IMGSTORE_CHANNEL_STACK_MAX;
    assert_int_equal(imgstore_schema_channel_encode(&bytes, &len, s), 0);
    assert_int_equal(imgstore_schema_channel_parse(&parsed, bytes, len), 0);
    assert_int_equal(parsed->stack_count, IMGSTORE_CHANNEL_STACK_MAX);
    assert_string_equal(parsed->stack[IMGSTORE_CHANNEL_STACK_MAX - 1], "0.1");
    imgstore_channel_state_free(parsed);
    free(bytes);
    s->stack_count = IMGSTORE_CHANNEL_STACK_MAX + 1;
    assert_encode_refused(s, "channel: stack: must hold at most 32 versions, found 33");
    s->stack_count = IMGSTORE_CHANNEL_STACK_MAX;
    /* one more than the cap, in bytes */
    used += (size_t)snprintf(list + used, sizeof(list) - used, "\"stack\":[");
    for (size_t i = 0; i <= IMGSTORE_CHANNEL_STACK_MAX; i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s\"0.1\"", i ? "," : "");
    snprintf(list + used, sizeof(list) - used, "]");
    text = replaced(golden, "\"stack\":[\"1.1.0\",\"0.9\"]", list);
    parsed = (imgstore_channel_state *)1;
    assert_int_equal(imgstore_schema_channel_parse(&parsed, text, strlen(text)), IMGSTORE_EINVALID);
    assert_null(parsed);
    assert_string_equal(imgstore_error_last(),
                        "channel: stack: must hold at most 32 versions, found 33");
    free(text);
    imgstore_channel_state_free(s);
}

static void parse_ignores_key_order_and_whitespace(void **state)
{
    static const char shuffled[] =
        "{\n  \"version\": \"1.0.0\", \"time\": \"2026-11-25T13:51:00Z\", \"sequence\": 1,\n"
        "  \"schema\": \"imgstore.channel/1\", \"name\": \"app\",\n"
        "  \"manifest_sha256\": \"" SHA_A "\",\n"
        "  \"channel\": \"prod\", \"actor\": \"alice\", \"action\": \"deploy\"\n}\n";
    imgstore_channel_state *parsed = NULL;

    (void)state;
    assert_int_equal(imgstore_schema_channel_parse(&parsed, shuffled, strlen(shuffled)), 0);
    assert_encodes_to(parsed, minimal);
    imgstore_channel_state_free(parsed);
}

typedef struct {
    const char *find;
    const char *with;
    const char *message;
} mutation;

static const mutation mutations[] = {
    {"imgstore.channel/1", "imgstore.manifest/1", "channel: schema: expected 'imgstore.channel/1'"},
    {"\"version\":\"1.0.0\"", "\"version\":\"1.0.0\",\"tag\":1", "channel: tag: unknown field"},
    {"\"name\":\"app\",", "", "channel: name: missing"},
    {"\"name\":\"app\"", "\"name\":\"../app\"", "channel: name: image name '../app'"},
    {"\"channel\":\"prod\"", "\"channel\":\"Prod\"", "channel: channel: channel name 'Prod'"},
    {"\"version\":\"1.0.0\"", "\"version\":\"\"", "channel: version: version '': must be 1 to 128"},
    {"\"previous_version\":\"1.1.0\"", "\"previous_version\":\"-1\"",
     "channel: previous_version: version '-1'"},
    {"\"previous_version\":\"1.1.0\"", "\"previous_version\":null",
     "channel: previous_version: expected a string, found null"},
    {"\"manifest_sha256\":\"" SHA_A "\"", "\"manifest_sha256\":\"" SHA_A "00\"",
     "channel: manifest_sha256: expected 64 lower-case hex digits"},
    {"\"sequence\":7", "\"sequence\":0", "channel: sequence: must be from 1 to 9007199254740992"},
    {"\"sequence\":7", "\"sequence\":-7", "channel: sequence: must be from 1"},
    {"\"sequence\":7", "\"sequence\":7.0",
     "channel: sequence: expected an integer, found a real number"},
    {"\"sequence\":7", "\"sequence\":9007199254740993",
     "channel: sequence: must be from 1 to 9007199254740992"},
    {"\"sequence\":7,", "", "channel: sequence: missing"},
    {"\"time\":\"2026-11-25T13:51:00Z\"", "\"time\":\"2026-11-25T13:51:00.5Z\"",
     "channel: time: '2026-11-25T13:51:00.5Z': expected a UTC time"},
    {"\"expires\":\"2026-12-01T00:00:00Z\"", "\"expires\":\"tomorrow\"",
     "channel: expires: 'tomorrow': expected a UTC time"},
    {"\"actor\":\"alice\"", "\"actor\":\"\"", "channel: actor: must be 1 to 4095 bytes"},
    {"\"action\":\"rollback\"", "\"action\":\"push\"",
     "channel: action: 'push' is not one of: deploy, rollback"},
    {"\"action\":\"rollback\"", "\"action\":true",
     "channel: action: expected a string, found a boolean"},
    {"\"reason\":\"bad \\\"1.1\\\"\"", "\"reason\":\"\"",
     "channel: reason: must be 1 to 4095 bytes"},
    {"\"reason\":\"bad \\\"1.1\\\"\"", "\"reason\":\"bad\",\"reason\":\"worse\"",
     "duplicate object key"},
    {"{\"action\"", "[{\"action\"", "channel: not valid JSON"},
    {"[\"1.1.0\",\"0.9\"]", "\"1.1.0\"", "channel: stack: expected an array, found a string"},
    {"[\"1.1.0\",\"0.9\"]", "null", "channel: stack: expected an array, found null"},
    {"[\"1.1.0\",\"0.9\"]", "[\"1.1.0\",9]", "channel: stack[1]: expected a string"},
    {"[\"1.1.0\",\"0.9\"]", "[\"1.1.0\",\"../x\"]", "channel: stack[1]: version '../x'"},
    {"[\"1.1.0\",\"0.9\"]", "[\"\"]", "channel: stack[0]: version '': must be 1 to 128"},
};

static void parse_refuses_each_rule_naming_the_field(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
        char *text = replaced(golden, mutations[i].find, mutations[i].with);
        imgstore_channel_state *parsed = (imgstore_channel_state *)1;

        if (imgstore_schema_channel_parse(&parsed, text, strlen(text)) != IMGSTORE_EINVALID)
            fail_msg("accepted: %s", text);
        assert_null(parsed);
        if (!strstr(imgstore_error_last(), mutations[i].message))
            fail_msg("message '%s' lacks '%s'", imgstore_error_last(), mutations[i].message);
        free(text);
    }
}

static void parse_refuses_non_objects_and_oversized_input(void **state)
{
    imgstore_channel_state *parsed = NULL;
    size_t len = 64 * 1024 + 1;
    char *big = malloc(len);

    (void)state;
    assert_int_equal(imgstore_schema_channel_parse(&parsed, "[]", 2), IMGSTORE_EINVALID);
    assert_string_equal(imgstore_error_last(), "channel: expected an object, found an array");
    assert_int_equal(imgstore_schema_channel_parse(&parsed, NULL, 0), IMGSTORE_EINVALID);
    assert_non_null(big);
    memset(big, ' ', len);
    memcpy(big, golden, strlen(golden));
    assert_int_equal(imgstore_schema_channel_parse(&parsed, big, len), IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "more than the 65536 allowed"));
    free(big);
    assert_null(parsed);
}

static void parse_never_accepts_truncated_bytes(void **state)
{
    size_t len = strlen(golden);

    (void)state;
    for (size_t cut = 0; cut < len; cut++) {
        imgstore_channel_state *parsed = NULL;

        assert_int_equal(imgstore_schema_channel_parse(&parsed, golden, cut), IMGSTORE_EINVALID);
        assert_null(parsed);
    }
}

static void encode_refuses_broken_fields_naming_them(void **state)
{
    imgstore_channel_state *s = sample();
    char *saved;

    (void)state;
    saved = s->actor;
    s->actor = NULL;
    assert_encode_refused(s, "channel: actor: missing");
    s->actor = saved;

    s->sequence = 0;
    assert_encode_refused(s, "channel: sequence: must be from 1");
    s->sequence = UINT64_MAX;
    assert_encode_refused(s, "channel: sequence: must be at most 9007199254740992");
    s->sequence = 7;

    saved = s->reason;
    s->reason = dup("\xff");
    assert_encode_refused(s, "channel: reason: not valid UTF-8");
    free(s->reason);
    s->reason = saved;

    memset(s->manifest_sha256, 'a', sizeof(s->manifest_sha256));
    assert_encode_refused(s, "channel: manifest_sha256: not NUL-terminated");
    strcpy(s->manifest_sha256, SHA_A);

    saved = s->action;
    s->action = dup("deploy ");
    assert_encode_refused(s, "channel: action: 'deploy ' is not one of");
    free(s->action);
    s->action = saved;

    assert_encode_refused(NULL, "channel: none given");
    assert_encodes_to(s, golden);
    imgstore_channel_state_free(s);
}

static void to_json_has_the_shape_of_the_canonical_bytes(void **state)
{
    imgstore_channel_state *s = sample();
    json_t *obj = imgstore_schema_channel_to_json(s);
    char *dumped;

    (void)state;
    assert_non_null(obj);
    dumped = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(dumped, golden);
    free(dumped);
    json_decref(obj);
    imgstore_channel_state_free(s);
    imgstore_channel_state_free(NULL);
}

static void schema_file_lists_exactly_the_encoded_keys(void **state)
{
    char path[4096];
    json_error_t error;
    json_t *schema;
    json_t *properties;
    json_t *required;
    json_t *encoded;
    const char *key;
    json_t *value;
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "%s/schema/channel.schema.json", IMGSTORE_SOURCE_DIR);
    schema = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (!schema)
        fail_msg("%s: line %d: %s", path, error.line, error.text);
    assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
    properties = json_object_get(schema, "properties");
    required = json_object_get(schema, "required");
    encoded = json_loads(golden, 0, NULL);
    assert_non_null(encoded);
    assert_int_equal(json_object_size(properties), json_object_size(encoded));
    json_object_foreach(encoded, key, value)
    {
        if (!json_object_get(properties, key))
            fail_msg("encoded key '%s' not in channel.schema.json", key);
    }
    /* the minimal state holds exactly the required keys */
    json_decref(encoded);
    encoded = json_loads(minimal, 0, NULL);
    assert_int_equal(json_array_size(required), json_object_size(encoded));
    json_array_foreach(required, i, value)
        assert_non_null(json_object_get(encoded, json_string_value(value)));
    json_decref(encoded);
    json_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_writes_golden_canonical_bytes),
        cmocka_unit_test(round_trip_encode_parse_encode_is_identical),
        cmocka_unit_test(optional_fields_are_left_out_when_null),
        cmocka_unit_test(empty_stack_is_written_and_read_as_known),
        cmocka_unit_test(stack_holds_at_most_the_cap),
        cmocka_unit_test(parse_ignores_key_order_and_whitespace),
        cmocka_unit_test(parse_refuses_each_rule_naming_the_field),
        cmocka_unit_test(parse_refuses_non_objects_and_oversized_input),
        cmocka_unit_test(parse_never_accepts_truncated_bytes),
        cmocka_unit_test(encode_refuses_broken_fields_naming_them),
        cmocka_unit_test(to_json_has_the_shape_of_the_canonical_bytes),
        cmocka_unit_test(schema_file_lists_exactly_the_encoded_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
