/*
 * Trust policies (issue #4): canonical bytes (a golden string), round trips, every validation
 * rule refused with the field's path, the editing helpers' rules, and schema/policy.schema.json
 * in step with the parser (its keys, its limits and its key pattern).
 */
#include "schema/schema.h"
#include "schema_test_util.h"

#include <regex.h>
#include <stdio.h>

/* Real keys from ssh-keygen -t ed25519; K2's comment is UTF-8 ("josé@laptop"). */
#define K1  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPZ5WSWTJY/17bS2h+j8LtA6jVZH0u6amarrH2o5E4cI"
#define K2  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJsG7MUWPiW7Qw0z4oGN3wGRsD1ogLVbANkgz//B/5ZW"
#define K3  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP+cqgpEOMnI9Zv2F42M2y9BKADcjSqPRHs9X63vn4Ax"
#define K1C K1 " root@ci"
#define K2C K2 " jos\xc3\xa9@laptop"

static const char golden[] = "{\"channel_ttl_seconds\":2592000,\"roles\":{"
                             "\"deploy\":{\"keys\":[\"" K2C "\",\"" K3 "\"],\"threshold\":2},"
                             "\"release\":{\"keys\":[\"" K3 "\"],\"threshold\":1},"
                             "\"root\":{\"keys\":[\"" K1C "\"],\"threshold\":1}},"
                             "\"schema\":\"imgstore.policy/1\",\"version\":3}";

static void set_role(imgstore_policy_role *role, uint32_t threshold, size_t count, ...)
{
    va_list ap;

    role->keys = calloc(count, sizeof(*role->keys));
    assert_non_null(role->keys);
    va_start(ap, count);
    for (size_t i = 0; i < count; i++)
        role->keys[i] = dup(va_arg(ap, const char *));
    va_end(ap);
    role->key_count = count;
    role->threshold = threshold;
}

static imgstore_policy *sample(void)
{
    imgstore_policy *p = calloc(1, sizeof(*p));

    assert_non_null(p);
    p->version = 3;
    p->channel_ttl_seconds = IMGSTORE_POLICY_TTL_DEFAULT;
    set_role(&p->roles[IMGSTORE_ROLE_ROOT], 1, 1, K1C);
    set_role(&p->roles[IMGSTORE_ROLE_RELEASE], 1, 1, K3);
    set_role(&p->roles[IMGSTORE_ROLE_DEPLOY], 2, 2, K2C, K3);
    return p;
}

/* A distinct valid key line for each n < 4096 (only the last two base64 characters vary). */
static void make_key(char *buf, size_t cap, unsigned n, const char *comment)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    snprintf(buf, cap, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA%.40s%c%c%s%s",
             "0123456789abcdefghij0123456789abcdefghij", b64[(n >> 6) & 63], b64[n & 63],
             comment ? " " : "", comment ? comment : "");
}

static void assert_encodes_to(const imgstore_policy *p, const char *expected)
{
    char *bytes = NULL;
    size_t len = 0;

    if (imgstore_schema_policy_encode(&bytes, &len, p) != 0)
        fail_msg("encode failed: %s", imgstore_error_last());
    assert_int_equal(len, strlen(expected));
    assert_string_equal(bytes, expected);
    free(bytes);
}

static void assert_encode_refused(const imgstore_policy *p, const char *message_part)
{
    char *bytes = NULL;
    size_t len = 0;

    assert_int_equal(imgstore_schema_policy_encode(&bytes, &len, p), IMGSTORE_EINVALID);
    assert_null(bytes);
    if (!strstr(imgstore_error_last(), message_part))
        fail_msg("message '%s' lacks '%s'", imgstore_error_last(), message_part);
}

static void assert_failed(int got, int code, const char *message_part)
{
    if (got != code)
        fail_msg("returned %d, expected %d (%s)", got, code, imgstore_error_last());
    if (!strstr(imgstore_error_last(), message_part))
        fail_msg("message '%s' lacks '%s'", imgstore_error_last(), message_part);
}

static imgstore_policy *parsed_golden(void)
{
    imgstore_policy *parsed = NULL;

    if (imgstore_schema_policy_parse(&parsed, golden, strlen(golden)) != 0)
        fail_msg("golden refused: %s", imgstore_error_last());
    return parsed;
}

static void encode_writes_golden_canonical_bytes(void **state)
{
    imgstore_policy *p = sample();

    (void)state;
    assert_encodes_to(p, golden);
    assert_true(imgstore_schema_policy_is_canonical(golden, strlen(golden)));
    imgstore_policy_free(p);
}

static void round_trip_parse_encode_is_byte_identical(void **state)
{
    imgstore_policy *parsed = parsed_golden();
    const imgstore_policy_role *deploy = &parsed->roles[IMGSTORE_ROLE_DEPLOY];

    (void)state;
    assert_int_equal(parsed->version, 3);
    assert_int_equal(parsed->channel_ttl_seconds, 2592000);
    assert_string_equal(deploy->keys[0], K2C);
    assert_int_equal(deploy->threshold, 2);
    assert_encodes_to(parsed, golden);
    imgstore_policy_free(parsed);
}

static void parse_accepts_non_canonical_input(void **state)
{
    static const char shuffled[] =
        "{\n  \"version\": 3, \"schema\": \"imgstore.policy/1\",\n"
        "  \"roles\": {\n"
        "    \"root\": {\"threshold\": 1, \"keys\": [\"" K1C "\"]},\n"
        "    \"release\": {\"threshold\": 1, \"keys\": [\"" K3 "\"]},\n"
        "    \"deploy\": {\"threshold\": 2, \"keys\": [\"jos\\u00e9\", \"" K3 "\"]}\n"
        "  },\n  \"channel_ttl_seconds\": 2592000\n}\n";
    char *text = replaced(shuffled, "\"jos\\u00e9\"", "\"" K2 " jos\\u00e9@laptop\"");
    imgstore_policy *parsed = NULL;

    (void)state;
    assert_int_equal(imgstore_schema_policy_parse(&parsed, text, strlen(text)), 0);
    assert_false(imgstore_schema_policy_is_canonical(text, strlen(text)));
    assert_encodes_to(parsed, golden);
    imgstore_policy_free(parsed);
    free(text);
}

static void is_canonical_only_for_the_exact_bytes(void **state)
{
    char *newline = replaced(golden, "\"version\":3}", "\"version\":3}\n");

    (void)state;
    assert_true(imgstore_schema_policy_is_canonical(golden, strlen(golden)));
    assert_false(imgstore_schema_policy_is_canonical(newline, strlen(newline)));
    assert_false(imgstore_schema_policy_is_canonical(golden, strlen(golden) - 1));
    assert_false(imgstore_schema_policy_is_canonical("{}", 2));
    assert_false(imgstore_schema_policy_is_canonical(NULL, 0));
    free(newline);
}

typedef struct {
    const char *find;
    const char *with;
    const char *message;
} mutation;

#define RELEASE_ROLE "\"release\":{\"keys\":[\"" K3 "\"],\"threshold\":1}"

static const mutation mutations[] = {
    {"imgstore.policy/1", "imgstore.policy/2", "policy: schema: expected 'imgstore.policy/1'"},
    {"\"version\":3", "\"version\":3,\"extra\":1", "policy: extra: unknown field"},
    {",\"version\":3", "", "policy: version: missing"},
    {"\"version\":3", "\"version\":0", "policy: version: must be from 1 to 9007199254740992"},
    {"\"version\":3", "\"version\":3.0", "policy: version: expected an integer, found a real"},
    {"\"version\":3", "\"version\":9007199254740993", "policy: version: must be from 1 to"},
    {"\"channel_ttl_seconds\":2592000,", "", "policy: channel_ttl_seconds: missing"},
    {"2592000", "59", "policy: channel_ttl_seconds: must be from 60 to 31536000"},
    {"2592000", "31536001", "policy: channel_ttl_seconds: must be from 60 to 31536000"},
    {"2592000", "-1", "policy: channel_ttl_seconds: must be from 60 to 31536000"},
    {"2592000", "\"30d\"", "policy: channel_ttl_seconds: expected an integer, found a string"},
    {"\"roles\":{", "\"roles\":{\"admin\":{},", "policy: roles.admin: unknown field"},
    {RELEASE_ROLE ",", "", "policy: roles.release: missing"},
    {RELEASE_ROLE, "\"release\":[]", "policy: roles.release: expected an object, found an array"},
    {"\"threshold\":2", "\"threshold\":2,\"name\":\"d\"", "policy: roles.deploy.name: unknown"},
    {"\"keys\":[\"" K2C "\",\"" K3 "\"],", "", "policy: roles.deploy.keys: missing"},
    {"[\"" K3 "\"],\"threshold\":1},\"root\"", "[],\"threshold\":1},\"root\"",
     "policy: roles.release.keys: must hold 1 to 32 keys, found 0"},
    {"[\"" K1C "\"]", "\"" K1C "\"", "policy: roles.root.keys: expected an array, found a string"},
    {"[\"" K3 "\"],\"threshold\":1},\"root\"", "[3],\"threshold\":1},\"root\"",
     "policy: roles.release.keys[0]: expected a string"},
    {"\"" K1C "\"", "\"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ root@ci\"",
     "policy: roles.root.keys[0]: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ r...': expected "
     "'ssh-ed25519 AAAA... [comment]'"},
    {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPZ5", "ssh-ed25519 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI",
     "policy: roles.root.keys[0]: 'ssh-ed25519 AAAAE2VjZHNhLXNoYTItbmlzdHAy...': not an Ed25519"},
    {"AAAAIPZ5", "AAAAIZZ5", "policy: roles.root.keys[0]: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"},
    {"E4cI root", "E4c root", "policy: roles.root.keys[0]: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"},
    {"E4cI root", "E4cIA root", "not an Ed25519 public key (expected 68 base64 characters"},
    {"Y/17bS2h", "Y-17bS2h", "policy: roles.root.keys[0]: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"},
    {"E4cI root@ci", "E4cI  root@ci",
     "policy: roles.root.keys[0]: key ...marrH2o5E4cI: expected one space"},
    {"root@ci\"", "root@ci \"", "expected one space before the comment, none after"},
    {"E4cI root@ci", "E4cI ", "expected one space before the comment"},
    {"root@ci", "root\\tci",
     "policy: roles.root.keys[0]: key ...marrH2o5E4cI: the comment "
     "contains a control character (0x09)"},
    {"root@ci", "root\\u007fci", "contains a control character (0x7f)"},
    {"\"" K3 "\"],\"threshold\":2", "\"" K2 " other\"],\"threshold\":2",
     "policy: roles.deploy.keys[1]: same key as keys[0]"},
    {"\"threshold\":2", "\"threshold\":3",
     "policy: roles.deploy.threshold: 3 is more than the 2 keys"},
    {"\"threshold\":2", "\"threshold\":0", "policy: roles.deploy.threshold: must be from 1 to 32"},
    {"\"threshold\":2", "\"threshold\":33", "policy: roles.deploy.threshold: must be from 1 to 32"},
    {"\"threshold\":2", "\"threshold\":-2", "policy: roles.deploy.threshold: must be from 1 to 32"},
    {",\"threshold\":2", "", "policy: roles.deploy.threshold: missing"},
    {"\"threshold\":2", "\"threshold\":2,\"threshold\":2", "duplicate object key"},
    {"{\"channel_ttl_seconds\"", "[{\"channel_ttl_seconds\"", "policy: not valid JSON"},
};

static void parse_refuses_each_rule_naming_the_field(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
        char *text = replaced(golden, mutations[i].find, mutations[i].with);
        imgstore_policy *parsed = (imgstore_policy *)1;

        if (imgstore_schema_policy_parse(&parsed, text, strlen(text)) != IMGSTORE_EINVALID)
            fail_msg("accepted: %s", text);
        assert_null(parsed);
        if (!strstr(imgstore_error_last(), mutations[i].message))
            fail_msg("message '%s' lacks '%s'", imgstore_error_last(), mutations[i].message);
        free(text);
    }
}

static void parse_limits_key_lines_to_512_bytes(void **state)
{
    char comment[512];
    char line[1024];
    char *text;
    imgstore_policy *parsed = NULL;

    (void)state;
    /* "ssh-ed25519 " + 68 + " " is 81 bytes, so a 431-byte comment makes 512. */
    memset(comment, 'c', 431);
    comment[431] = '\0';
    snprintf(line, sizeof(line), "%s %s", K1, comment);
    assert_int_equal(strlen(line), 512);
    text = replaced(golden, K1C, line);
    assert_int_equal(imgstore_schema_policy_parse(&parsed, text, strlen(text)), 0);
    imgstore_policy_free(parsed);
    free(text);
    strcat(line, "c");
    text = replaced(golden, K1C, line);
    assert_failed(imgstore_schema_policy_parse(&parsed, text, strlen(text)), IMGSTORE_EINVALID,
                  "policy: roles.root.keys[0]: must be at most 512 bytes, found 513");
    assert_null(parsed);
    free(text);
}

static void parse_refuses_more_than_32_keys_in_a_role(void **state)
{
    json_t *doc = json_loads(golden, 0, NULL);
    imgstore_policy *parsed = NULL;
    json_t *keys;
    char line[128];
    char *text;

    (void)state;
    assert_non_null(doc);
    keys = json_object_get(json_object_get(json_object_get(doc, "roles"), "deploy"), "keys");
    for (unsigned n = 0; json_array_size(keys) < IMGSTORE_POLICY_KEYS_MAX; n++) {
        make_key(line, sizeof(line), n, NULL);
        assert_int_equal(json_array_append_new(keys, json_string(line)), 0);
    }
    text = json_dumps(doc, JSON_COMPACT);
    assert_int_equal(imgstore_schema_policy_parse(&parsed, text, strlen(text)), 0);
    assert_int_equal(parsed->roles[IMGSTORE_ROLE_DEPLOY].key_count, 32);
    imgstore_policy_free(parsed);
    free(text);
    make_key(line, sizeof(line), 4000, NULL);
    assert_int_equal(json_array_append_new(keys, json_string(line)), 0);
    text = json_dumps(doc, JSON_COMPACT);
    assert_failed(imgstore_schema_policy_parse(&parsed, text, strlen(text)), IMGSTORE_EINVALID,
                  "policy: roles.deploy.keys: must hold 1 to 32 keys, found 33");
    free(text);
    json_decref(doc);
}

static void parse_refuses_non_objects_and_oversized_input(void **state)
{
    imgstore_policy *parsed = NULL;
    size_t len = 64 * 1024 + 1;
    char *big = malloc(len);

    (void)state;
    assert_failed(imgstore_schema_policy_parse(&parsed, "[]", 2), IMGSTORE_EINVALID,
                  "policy: expected an object, found an array");
    assert_int_equal(imgstore_schema_policy_parse(&parsed, NULL, 0), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_schema_policy_parse(NULL, golden, strlen(golden)), IMGSTORE_EINVALID);
    assert_non_null(big);
    memset(big, ' ', len);
    memcpy(big, golden, strlen(golden));
    assert_failed(imgstore_schema_policy_parse(&parsed, big, len), IMGSTORE_EINVALID,
                  "more than the 65536 allowed");
    free(big);
    assert_null(parsed);
}

static void parse_never_accepts_truncated_bytes(void **state)
{
    size_t len = strlen(golden);

    (void)state;
    for (size_t cut = 0; cut < len; cut++) {
        imgstore_policy *parsed = NULL;

        assert_int_equal(imgstore_schema_policy_parse(&parsed, golden, cut), IMGSTORE_EINVALID);
        assert_null(parsed);
    }
}

static void encode_refuses_broken_fields_naming_them(void **state)
{
    imgstore_policy *p = sample();
    imgstore_policy_role *root = &p->roles[IMGSTORE_ROLE_ROOT];
    imgstore_policy_role *deploy = &p->roles[IMGSTORE_ROLE_DEPLOY];
    char *saved;

    (void)state;
    p->version = 0;
    assert_encode_refused(p, "policy: version: must be from 1");
    p->version = UINT64_MAX;
    assert_encode_refused(p, "policy: version: must be at most 9007199254740992");
    p->version = 3;

    p->channel_ttl_seconds = 0;
    assert_encode_refused(p, "policy: channel_ttl_seconds: must be from 60 to 31536000");
    p->channel_ttl_seconds = -IMGSTORE_POLICY_TTL_DEFAULT;
    assert_encode_refused(p, "policy: channel_ttl_seconds: must be from 60 to 31536000");
    p->channel_ttl_seconds = IMGSTORE_POLICY_TTL_DEFAULT;

    saved = deploy->keys[1];
    deploy->keys[1] = NULL;
    assert_encode_refused(p, "policy: roles.deploy.keys[1]: missing");
    deploy->keys[1] = dup(K2 " same key, new comment");
    assert_encode_refused(p, "policy: roles.deploy.keys[1]: same key as keys[0]");
    free(deploy->keys[1]);
    deploy->keys[1] = saved;

    saved = root->keys[0];
    root->keys[0] = dup(K1 " \xff");
    assert_encode_refused(p, "policy: roles.root.keys[0]: not valid UTF-8");
    free(root->keys[0]);
    root->keys[0] = saved;

    root->key_count = 0;
    assert_encode_refused(p, "policy: roles.root.keys: must hold 1 to 32 keys, found 0");
    root->key_count = 33;
    assert_encode_refused(p, "policy: roles.root.keys: must hold 1 to 32 keys, found 33");
    root->key_count = 1;

    deploy->threshold = 0;
    assert_encode_refused(p, "policy: roles.deploy.threshold: must be from 1 to 32");
    deploy->threshold = 3;
    assert_encode_refused(p, "policy: roles.deploy.threshold: 3 is more than the 2 keys");
    deploy->threshold = 2;

    assert_encode_refused(NULL, "policy: none given");
    assert_encodes_to(p, golden);
    imgstore_policy_free(p);
}

static void encode_refuses_a_policy_over_64_kib(void **state)
{
    imgstore_policy *p = calloc(1, sizeof(*p));
    char comment[432];
    char line[600];
    char *bytes = NULL;
    size_t len = 0;

    (void)state;
    assert_non_null(p);
    p->version = 1;
    p->channel_ttl_seconds = IMGSTORE_POLICY_TTL_DEFAULT;
    /* The largest policy in key lines (3 x 32 x 512 bytes) fits... */
    memset(comment, 'c', 431);
    comment[431] = '\0';
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        p->roles[r].keys = calloc(IMGSTORE_POLICY_KEYS_MAX, sizeof(char *));
        assert_non_null(p->roles[r].keys);
        p->roles[r].key_count = IMGSTORE_POLICY_KEYS_MAX;
        p->roles[r].threshold = IMGSTORE_POLICY_KEYS_MAX;
        for (unsigned i = 0; i < IMGSTORE_POLICY_KEYS_MAX; i++) {
            make_key(line, sizeof(line), i, comment);
            p->roles[r].keys[i] = dup(line);
        }
    }
    assert_int_equal(imgstore_schema_policy_encode(&bytes, &len, p), 0);
    assert_true(len > 48 * 1024 && len <= 64 * 1024);
    free(bytes);
    /* ...but comments that JSON must escape can double it, past what parse accepts. */
    memset(comment, '"', 431);
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        for (unsigned i = 0; i < IMGSTORE_POLICY_KEYS_MAX; i++) {
            make_key(line, sizeof(line), i, comment);
            free(p->roles[r].keys[i]);
            p->roles[r].keys[i] = dup(line);
        }
    }
    assert_encode_refused(p, "policy: ");
    assert_non_null(strstr(imgstore_error_last(), "more than the 65536 allowed"));
    imgstore_policy_free(p);
}

static void role_names_and_parse_agree(void **state)
{
    imgstore_role role = IMGSTORE_ROLE_COUNT;

    (void)state;
    for (int r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        assert_int_equal(imgstore_schema_role_parse(&role, imgstore_schema_role_name(r)), 0);
        assert_int_equal(role, r);
    }
    assert_string_equal(imgstore_schema_role_name(IMGSTORE_ROLE_ROOT), "root");
    assert_string_equal(imgstore_schema_role_name(IMGSTORE_ROLE_RELEASE), "release");
    assert_string_equal(imgstore_schema_role_name(IMGSTORE_ROLE_DEPLOY), "deploy");
    assert_null(imgstore_schema_role_name(IMGSTORE_ROLE_COUNT));
    assert_failed(imgstore_schema_role_parse(&role, "Root"), IMGSTORE_EINVALID,
                  "role 'Root': expected root, release or deploy");
    assert_failed(imgstore_schema_role_parse(&role, "admin\n"), IMGSTORE_EINVALID,
                  "role 'admin\\x0a'");
    assert_int_equal(imgstore_schema_role_parse(&role, NULL), IMGSTORE_EINVALID);
    assert_int_equal(role, IMGSTORE_ROLE_DEPLOY);
}

static void copy_is_deep_and_independent(void **state)
{
    imgstore_policy *p = parsed_golden();
    imgstore_policy *copy = NULL;

    (void)state;
    assert_int_equal(imgstore_schema_policy_copy(&copy, p), 0);
    imgstore_policy_free(p);
    assert_encodes_to(copy, golden);
    copy->version = 4;
    assert_int_equal(imgstore_schema_policy_add_key(copy, IMGSTORE_ROLE_ROOT, K2), 0);
    p = parsed_golden();
    assert_int_equal(p->roles[IMGSTORE_ROLE_ROOT].key_count, 1);
    assert_int_equal(copy->roles[IMGSTORE_ROLE_ROOT].key_count, 2);
    imgstore_policy_free(copy);
    assert_int_equal(imgstore_schema_policy_copy(&copy, NULL), IMGSTORE_EINVALID);
    assert_null(copy);
    imgstore_policy_free(p);
}

static void add_key_appends_and_keeps_the_rules(void **state)
{
    imgstore_policy *p = sample();
    imgstore_policy_role *release = &p->roles[IMGSTORE_ROLE_RELEASE];
    char line[128];

    (void)state;
    assert_int_equal(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, K1C), 0);
    assert_int_equal(release->key_count, 2);
    assert_string_equal(release->keys[1], K1C);
    assert_int_equal(release->threshold, 1);

    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, K1 " other comment"),
                  IMGSTORE_EEXISTS,
                  "policy: roles.release.keys[1]: key ...marrH2o5E4cI is already in the role");
    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, "ssh-ed25519 AAAA"),
                  IMGSTORE_EINVALID, "policy: roles.release.keys: 'ssh-ed25519 AAAA': not an");
    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, K2 " tab\there"),
                  IMGSTORE_EINVALID, "control character (0x09)");
    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, K2 " \xc3"),
                  IMGSTORE_EINVALID, "the comment is not valid UTF-8");
    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, K2 "\n"),
                  IMGSTORE_EINVALID, "not an Ed25519 public key");
    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_COUNT, K2), IMGSTORE_EINVALID,
                  "policy: role 3: not a role");
    assert_int_equal(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, NULL),
                     IMGSTORE_EINVALID);
    assert_int_equal(release->key_count, 2);

    while (release->key_count < IMGSTORE_POLICY_KEYS_MAX) {
        make_key(line, sizeof(line), (unsigned)release->key_count, "bulk");
        assert_int_equal(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, line), 0);
    }
    assert_failed(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_RELEASE, K2), IMGSTORE_EINVALID,
                  "policy: roles.release.keys: already holds the 32 keys allowed");
    /* A full role may require every key. */
    assert_int_equal(imgstore_schema_policy_set_threshold(p, IMGSTORE_ROLE_RELEASE, 32), 0);
    imgstore_policy_free(p);
}

static void remove_key_matches_the_base64_part_and_keeps_the_rules(void **state)
{
    imgstore_policy *p = sample();
    imgstore_policy_role *deploy = &p->roles[IMGSTORE_ROLE_DEPLOY];

    (void)state;
    assert_failed(imgstore_schema_policy_remove_key(p, IMGSTORE_ROLE_DEPLOY, K3), IMGSTORE_EINVALID,
                  "policy: roles.deploy.keys: removing key ...RHs9X63vn4Ax would leave 1 keys for "
                  "a threshold of 2; lower the threshold first");
    assert_failed(imgstore_schema_policy_remove_key(p, IMGSTORE_ROLE_DEPLOY, K1),
                  IMGSTORE_ENOTFOUND, "policy: roles.deploy.keys: no key ...marrH2o5E4cI in");
    assert_failed(imgstore_schema_policy_remove_key(p, IMGSTORE_ROLE_DEPLOY, "K2"),
                  IMGSTORE_EINVALID, "policy: roles.deploy.keys: 'K2': expected 'ssh-ed25519");
    assert_int_equal(deploy->key_count, 2);

    assert_int_equal(imgstore_schema_policy_set_threshold(p, IMGSTORE_ROLE_DEPLOY, 1), 0);
    /* Matched by key material: the comment given differs from the stored one. */
    assert_int_equal(imgstore_schema_policy_remove_key(p, IMGSTORE_ROLE_DEPLOY, K2 " whoever"), 0);
    assert_int_equal(deploy->key_count, 1);
    assert_string_equal(deploy->keys[0], K3);
    assert_failed(imgstore_schema_policy_remove_key(p, IMGSTORE_ROLE_DEPLOY, K3), IMGSTORE_EINVALID,
                  "policy: roles.deploy.keys: key ...RHs9X63vn4Ax is the last key of the role");
    assert_int_equal(deploy->key_count, 1);

    p->version = 4;
    assert_encodes_to(p, "{\"channel_ttl_seconds\":2592000,\"roles\":{"
                         "\"deploy\":{\"keys\":[\"" K3 "\"],\"threshold\":1},"
                         "\"release\":{\"keys\":[\"" K3 "\"],\"threshold\":1},"
                         "\"root\":{\"keys\":[\"" K1C "\"],\"threshold\":1}},"
                         "\"schema\":\"imgstore.policy/1\",\"version\":4}");
    imgstore_policy_free(p);
}

static void set_threshold_stays_within_the_keys(void **state)
{
    imgstore_policy *p = sample();

    (void)state;
    assert_failed(imgstore_schema_policy_set_threshold(p, IMGSTORE_ROLE_DEPLOY, 0),
                  IMGSTORE_EINVALID, "policy: roles.deploy.threshold: must be at least 1");
    assert_failed(imgstore_schema_policy_set_threshold(p, IMGSTORE_ROLE_ROOT, 2), IMGSTORE_EINVALID,
                  "policy: roles.root.threshold: 2 is more than the 1 keys");
    assert_int_equal(p->roles[IMGSTORE_ROLE_ROOT].threshold, 1);
    assert_int_equal(imgstore_schema_policy_add_key(p, IMGSTORE_ROLE_ROOT, K2), 0);
    assert_int_equal(imgstore_schema_policy_set_threshold(p, IMGSTORE_ROLE_ROOT, 2), 0);
    assert_int_equal(p->roles[IMGSTORE_ROLE_ROOT].threshold, 2);
    assert_int_equal(imgstore_schema_policy_set_threshold(NULL, IMGSTORE_ROLE_ROOT, 1),
                     IMGSTORE_EINVALID);
    imgstore_policy_free(p);
}

static void to_json_has_the_shape_of_the_canonical_bytes(void **state)
{
    imgstore_policy *p = sample();
    json_t *obj = imgstore_schema_policy_to_json(p);
    char *dumped;

    (void)state;
    assert_non_null(obj);
    dumped = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(dumped, golden);
    free(dumped);
    json_decref(obj);
    assert_null(imgstore_schema_policy_to_json(NULL));
    imgstore_policy_free(p);
    imgstore_policy_free(NULL);
}

/* ---- schema/policy.schema.json -------------------------------------------------------- */

static json_t *load_schema_file(void)
{
    char path[4096];
    json_error_t error;
    json_t *schema;

    snprintf(path, sizeof(path), "%s/schema/policy.schema.json", IMGSTORE_SOURCE_DIR);
    schema = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (!schema)
        fail_msg("%s: line %d: %s", path, error.line, error.text);
    return schema;
}

static json_int_t schema_int(const json_t *obj, const char *key)
{
    json_t *value = json_object_get(obj, key);

    if (!json_is_integer(value))
        fail_msg("policy.schema.json: no integer '%s'", key);
    return json_integer_value(value);
}

static void assert_same_key_set(const json_t *a, const json_t *b, const char *what)
{
    const char *key;
    json_t *value;

    assert_int_equal(json_object_size(a), json_object_size(b));
    json_object_foreach((json_t *)a, key, value)
    {
        if (!json_object_get(b, key))
            fail_msg("%s: key '%s' on one side only", what, key);
    }
}

static void schema_file_lists_exactly_the_encoded_keys(void **state)
{
    json_t *schema = load_schema_file();
    json_t *encoded = json_loads(golden, 0, NULL);
    json_t *properties = json_object_get(schema, "properties");
    json_t *roles = json_object_get(properties, "roles");
    json_t *role = json_object_get(json_object_get(schema, "$defs"), "role");
    json_t *value;
    size_t i;

    (void)state;
    assert_non_null(encoded);
    assert_string_equal(json_string_value(json_object_get(schema, "$schema")),
                        "https://json-schema.org/draft/2020-12/schema");
    assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
    assert_true(json_is_false(json_object_get(roles, "additionalProperties")));
    assert_true(json_is_false(json_object_get(role, "additionalProperties")));
    assert_same_key_set(properties, encoded, "top level");
    assert_int_equal(json_array_size(json_object_get(schema, "required")),
                     json_object_size(encoded));
    assert_same_key_set(json_object_get(roles, "properties"), json_object_get(encoded, "roles"),
                        "roles");
    json_array_foreach(json_object_get(roles, "required"), i, value)
    {
        imgstore_role parsed;

        assert_int_equal(imgstore_schema_role_parse(&parsed, json_string_value(value)), 0);
    }
    assert_int_equal(json_array_size(json_object_get(roles, "required")), IMGSTORE_ROLE_COUNT);
    assert_same_key_set(json_object_get(role, "properties"),
                        json_object_get(json_object_get(encoded, "roles"), "root"), "role");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(properties, "schema"), "const")),
        IMGSTORE_POLICY_SCHEMA);
    json_decref(encoded);
    json_decref(schema);
}

/* Parse golden with one integer replaced; 0 or the parser's code. */
static int parse_with(const char *find, json_int_t value)
{
    char with[64];
    char *text;
    imgstore_policy *parsed = NULL;
    int err;

    snprintf(with, sizeof(with), "%.*s%lld", (int)(strchr(find, ':') - find + 1), find,
             (long long)value);
    text = replaced(golden, find, with);
    err = imgstore_schema_policy_parse(&parsed, text, strlen(text));
    imgstore_policy_free(parsed);
    free(text);
    return err;
}

/* The schema's minimum and (when `upper`) maximum are accepted, one past them refused. */
static void assert_bounds_agree(const char *find, const json_t *limits, bool upper)
{
    json_int_t min = schema_int(limits, "minimum");
    json_int_t max = schema_int(limits, "maximum");

    assert_int_equal(parse_with(find, min), 0);
    assert_int_equal(parse_with(find, min - 1), IMGSTORE_EINVALID);
    if (!upper)
        return;
    assert_int_equal(parse_with(find, max), 0);
    assert_int_equal(parse_with(find, max + 1), IMGSTORE_EINVALID);
}

static void schema_file_limits_agree_with_the_parser(void **state)
{
    json_t *schema = load_schema_file();
    json_t *properties = json_object_get(schema, "properties");
    json_t *role = json_object_get(json_object_get(schema, "$defs"), "role");
    json_t *keys = json_object_get(json_object_get(role, "properties"), "keys");
    json_t *threshold = json_object_get(json_object_get(role, "properties"), "threshold");

    (void)state;
    assert_bounds_agree("\"channel_ttl_seconds\":2592000",
                        json_object_get(properties, "channel_ttl_seconds"), true);
    assert_bounds_agree("\"version\":3", json_object_get(properties, "version"), true);
    /* A threshold's real maximum is the role's number of keys, checked above. */
    assert_bounds_agree("\"threshold\":2", threshold, false);
    assert_int_equal(schema_int(threshold, "maximum"), IMGSTORE_POLICY_KEYS_MAX);
    assert_int_equal(schema_int(keys, "minItems"), 1);
    assert_int_equal(schema_int(keys, "maxItems"), IMGSTORE_POLICY_KEYS_MAX);
    assert_int_equal(
        schema_int(json_object_get(json_object_get(schema, "$defs"), "public_key"), "maxLength"),
        512);
    json_decref(schema);
}

/*
 * The pattern is ECMA-262; it uses only what POSIX extended regexes share, except \uXXXX,
 * which becomes the byte itself (U+0000 becomes 0x01: no parsed string holds NUL).
 */
static void compile_ecma_pattern(regex_t *re, const char *pattern)
{
    char posix[512];
    size_t n = 0;

    for (const char *c = pattern; *c; c++) {
        assert_true(n + 1 < sizeof(posix));
        if (c[0] == '\\' && c[1] == 'u') {
            unsigned code;

            assert_int_equal(sscanf(c + 2, "%4x", &code), 1);
            assert_true(code < 0x80);
            posix[n++] = (char)(code == 0 ? 1 : code);
            c += 5;
            continue;
        }
        posix[n++] = *c;
    }
    posix[n] = '\0';
    if (regcomp(re, posix, REG_EXTENDED | REG_NOSUB) != 0)
        fail_msg("policy.schema.json: pattern does not compile as POSIX ERE: %s", pattern);
}

static void schema_file_key_pattern_agrees_with_the_parser(void **state)
{
    static const char *const lines[] = {
        K1C,
        K2C,
        K3,
        K1 " comment with spaces inside",
        K1 " x",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIZZ5WSWTJY/17bS2h+j8LtA6marrH2o5E4cIH2o5E4cI",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPZ5WSWTJY/17bS2h+j8LtA6marrH2o5E4cIH2o5E4c",
        K1 "A",
        K1 "=",
        "ssh-ed25519  AAAAC3NzaC1lZDI1NTE5AAAAIPZ5WSWTJY/17bS2h+j8LtA6marrH2o5E4cIH2o5E4cI",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPZ5WSWTJY-17bS2h+j8LtA6marrH2o5E4cIH2o5E4cI",
        K1 " ",
        K1 "  two",
        K1 " trailing ",
        K1 " tab\tin",
        K1 " del\x7fin",
        K1 " esc\x1b[31m",
        K1 "\tcomment",
    };
    json_t *schema = load_schema_file();
    json_t *doc = json_loads(golden, 0, NULL);
    json_t *root_keys;
    regex_t re;

    (void)state;
    compile_ecma_pattern(
        &re, json_string_value(json_object_get(
                 json_object_get(json_object_get(schema, "$defs"), "public_key"), "pattern")));
    assert_non_null(doc);
    root_keys = json_object_get(json_object_get(json_object_get(doc, "roles"), "root"), "keys");
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        imgstore_policy *parsed = NULL;
        bool matches = regexec(&re, lines[i], 0, NULL, 0) == 0;
        char *text;
        int err;

        assert_int_equal(json_array_set_new(root_keys, 0, json_string(lines[i])), 0);
        text = json_dumps(doc, JSON_COMPACT);
        assert_non_null(text);
        err = imgstore_schema_policy_parse(&parsed, text, strlen(text));
        if (matches != (err == 0))
            fail_msg("'%s': schema %s, parser %s (%s)", lines[i], matches ? "accepts" : "refuses",
                     err == 0 ? "accepts" : "refuses", imgstore_error_last());
        imgstore_policy_free(parsed);
        free(text);
    }
    regfree(&re);
    json_decref(doc);
    json_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_writes_golden_canonical_bytes),
        cmocka_unit_test(round_trip_parse_encode_is_byte_identical),
        cmocka_unit_test(parse_accepts_non_canonical_input),
        cmocka_unit_test(is_canonical_only_for_the_exact_bytes),
        cmocka_unit_test(parse_refuses_each_rule_naming_the_field),
        cmocka_unit_test(parse_limits_key_lines_to_512_bytes),
        cmocka_unit_test(parse_refuses_more_than_32_keys_in_a_role),
        cmocka_unit_test(parse_refuses_non_objects_and_oversized_input),
        cmocka_unit_test(parse_never_accepts_truncated_bytes),
        cmocka_unit_test(encode_refuses_broken_fields_naming_them),
        cmocka_unit_test(encode_refuses_a_policy_over_64_kib),
        cmocka_unit_test(role_names_and_parse_agree),
        cmocka_unit_test(copy_is_deep_and_independent),
        cmocka_unit_test(add_key_appends_and_keeps_the_rules),
        cmocka_unit_test(remove_key_matches_the_base64_part_and_keeps_the_rules),
        cmocka_unit_test(set_threshold_stays_within_the_keys),
        cmocka_unit_test(to_json_has_the_shape_of_the_canonical_bytes),
        cmocka_unit_test(schema_file_lists_exactly_the_encoded_keys),
        cmocka_unit_test(schema_file_limits_agree_with_the_parser),
        cmocka_unit_test(schema_file_key_pattern_agrees_with_the_parser),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
