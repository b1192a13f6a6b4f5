/*
 * The trust policy (issue #4): which keys may act as root, release and deploy, how many of
 * them must sign, and how long a signed channel state stays valid, as canonical JSON (the same
 * canonical form as manifests; see manifest.c), plus the editing helpers that keep its rules.
 * Keys are checked as text, because schema may not use the sign module: the ssh-ed25519
 * prefix, a base64 blob of the one length an Ed25519 key has, a clean comment. Whether a key
 * really decodes, who signed a policy, and whether its version follows the stored one are the
 * store's and the sign module's business. The shape is documented in schema/policy.schema.json.
 */
#include "schema/schema_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Three roles of 32 keys of 512 bytes fit (unless comments need escaping); larger is junk. */
#define POLICY_MAX_BYTES (64u * 1024)

#define TTL_MIN 60                /* one minute */
#define TTL_MAX (365 * 24 * 3600) /* 365 days */

/* Longest key line: an OpenSSH line with a generous comment, never a megabyte of junk. */
#define KEY_LINE_MAX 512

#define KEY_TYPE        "ssh-ed25519 "
/*
 * The wire blob of an Ed25519 public key is string "ssh-ed25519" + string of 32 key bytes:
 * 4 + 11 + 4 + 32 = 51 bytes, 68 base64 characters without padding. The first 25 characters
 * encode the type and the top of the length 32; the 26th holds the length's last two bits
 * (zero) and the top of the first key byte, so it is one of A..P.
 */
#define KEY_BLOB_PREFIX "AAAAC3NzaC1lZDI1NTE5AAAAI"
#define KEY_BASE64_LEN  68
/* A key in messages: its last base64 characters (the first 25 are the same for every key). */
#define KEY_SHOWN       "key ...%.12s"

static const char *const policy_keys[] = {"schema", "version", "channel_ttl_seconds", "roles",
                                          NULL};
static const char *const role_keys[] = {"keys", "threshold", NULL};

/* Indexed by imgstore_role. */
static const char *const role_names[] = {"root", "release", "deploy", NULL};

void imgstore_policy_free(imgstore_policy *policy)
{
    if (!policy)
        return;
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        imgstore_policy_role *role = &policy->roles[r];

        for (size_t i = 0; role->keys && i < role->key_count; i++)
            free(role->keys[i]);
        free(role->keys);
    }
    free(policy);
}

const char *imgstore_schema_role_name(imgstore_role role)
{
    if ((unsigned)role >= IMGSTORE_ROLE_COUNT)
        return NULL;
    return role_names[role];
}

int imgstore_schema_role_parse(imgstore_role *out, const char *name)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];

    if (!out || !name)
        return imgstore_error_set(IMGSTORE_EINVALID, "role: none given");
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        if (strcmp(name, role_names[r]) == 0) {
            *out = (imgstore_role)r;
            return 0;
        }
    }
    imgstore_schema__quote(shown, sizeof(shown), name, strlen(name));
    return imgstore_error_set(IMGSTORE_EINVALID, "role '%s': expected root, release or deploy",
                              shown);
}

/* ---- key lines ------------------------------------------------------------------------ */

static bool base64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* The base64 part of a line that passed check_key_line(): a key's identity. */
static const char *key_base64(const char *line)
{
    return line + strlen(KEY_TYPE);
}

static bool same_key(const char *line_a, const char *line_b)
{
    return memcmp(key_base64(line_a), key_base64(line_b), KEY_BASE64_LEN) == 0;
}

/* Where the 12 characters printed by KEY_SHOWN start. */
static const char *key_shown(const char *line)
{
    return key_base64(line) + KEY_BASE64_LEN - 12;
}

/*
 * One rule for every key line, from a document or from an editing call: the stored line is
 * the only spelling, so a comment must not start or end with a space (a reader that trims
 * it would see another line) and holds no control characters (it ends up in terminals).
 */
static int check_key_line(const char *line, const imgstore_schema__at *at, const char *key)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];
    size_t len = strlen(line);
    const char *base64;
    const char *comment;
    size_t comment_len;

    if (len > KEY_LINE_MAX)
        return imgstore_schema__fail(at, key, "must be at most %d bytes, found %zu", KEY_LINE_MAX,
                                     len);
    imgstore_schema__quote(shown, sizeof(shown), line, len);
    if (strncmp(line, KEY_TYPE, strlen(KEY_TYPE)) != 0)
        return imgstore_schema__fail(at, key, "'%s': expected 'ssh-ed25519 AAAA... [comment]'",
                                     shown);
    base64 = line + strlen(KEY_TYPE);
    if (strlen(base64) < KEY_BASE64_LEN ||
        strncmp(base64, KEY_BLOB_PREFIX, strlen(KEY_BLOB_PREFIX)) != 0 ||
        base64[strlen(KEY_BLOB_PREFIX)] < 'A' || base64[strlen(KEY_BLOB_PREFIX)] > 'P' ||
        (base64[KEY_BASE64_LEN] != '\0' && base64[KEY_BASE64_LEN] != ' '))
        return imgstore_schema__fail(at, key,
                                     "'%s': not an Ed25519 public key (expected %d base64 "
                                     "characters starting " KEY_BLOB_PREFIX ")",
                                     shown, KEY_BASE64_LEN);
    for (size_t i = strlen(KEY_BLOB_PREFIX); i < KEY_BASE64_LEN; i++) {
        if (!base64_char((unsigned char)base64[i]))
            return imgstore_schema__fail(at, key, "'%s': not base64 at byte %zu", shown,
                                         strlen(KEY_TYPE) + i);
    }
    if (base64[KEY_BASE64_LEN] == '\0')
        return 0;
    comment = base64 + KEY_BASE64_LEN + 1;
    comment_len = strlen(comment);
    if (comment_len == 0 || comment[0] == ' ' || comment[comment_len - 1] == ' ')
        return imgstore_schema__fail(
            at, key, KEY_SHOWN ": expected one space before the comment, none after",
            key_shown(line));
    for (size_t i = 0; i < comment_len; i++) {
        unsigned char c = (unsigned char)comment[i];

        if (c < 0x20 || c == 0x7f)
            return imgstore_schema__fail(
                at, key, KEY_SHOWN ": the comment contains a control character (0x%02x)",
                key_shown(line), c);
    }
    if (!imgstore_schema__utf8_valid(comment, comment_len))
        return imgstore_schema__fail(at, key, KEY_SHOWN ": the comment is not valid UTF-8",
                                     key_shown(line));
    return 0;
}

/* ---- reading -------------------------------------------------------------------------- */

static int read_role(imgstore_policy_role *role, const json_t *obj, const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    uint64_t threshold;
    json_t *keys;
    json_t *key;
    size_t i;
    int err;

    if ((err = imgstore_schema__keys(obj, at, role_keys)) < 0 ||
        (err = imgstore_schema__field(&keys, obj, at, "keys", JSON_ARRAY, true)) < 0)
        return err;
    if (json_array_size(keys) < 1 || json_array_size(keys) > IMGSTORE_POLICY_KEYS_MAX)
        return imgstore_schema__fail(at, "keys", "must hold 1 to %d keys, found %zu",
                                     IMGSTORE_POLICY_KEYS_MAX, json_array_size(keys));
    if (!(role->keys = calloc(json_array_size(keys), sizeof(*role->keys))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    json_array_foreach(keys, i, key)
    {
        imgstore_schema__at_index(&item, at, "keys", i);
        if (!json_is_string(key))
            return imgstore_schema__fail(&item, NULL, "expected a string");
        if ((err = check_key_line(json_string_value(key), &item, NULL)) < 0)
            return err;
        for (size_t k = 0; k < i; k++) {
            if (same_key(role->keys[k], json_string_value(key)))
                return imgstore_schema__fail(&item, NULL, "same key as keys[%zu]", k);
        }
        if (!(role->keys[i] = strdup(json_string_value(key))))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        role->key_count = i + 1;
    }
    if ((err = imgstore_schema__uint(&threshold, obj, at, "threshold", 1, IMGSTORE_POLICY_KEYS_MAX,
                                     true)) < 0)
        return err;
    if (threshold > role->key_count)
        return imgstore_schema__fail(at, "threshold", "%" PRIu64 " is more than the %zu keys",
                                     threshold, role->key_count);
    role->threshold = (uint32_t)threshold;
    return 0;
}

static int read_policy(imgstore_policy **out, const json_t *root)
{
    imgstore_policy *policy = NULL;
    imgstore_schema__at at;
    imgstore_schema__at roles_at;
    imgstore_schema__at role_at;
    uint64_t ttl;
    const char *schema;
    json_t *roles;
    json_t *role;
    int err;

    *out = NULL;
    imgstore_schema__at_root(&at, "policy");
    if (!(policy = calloc(1, sizeof(*policy)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_schema__keys(root, &at, policy_keys)) < 0 ||
        (err = imgstore_schema__string(&schema, root, &at, "schema", 0, SIZE_MAX, true)) < 0)
        goto done;
    if (strcmp(schema, IMGSTORE_POLICY_SCHEMA) != 0) {
        err = imgstore_schema__fail(&at, "schema", "expected '" IMGSTORE_POLICY_SCHEMA "'");
        goto done;
    }
    if ((err = imgstore_schema__uint(&policy->version, root, &at, "version", 1,
                                     IMGSTORE_SCHEMA__INT_MAX, true)) < 0 ||
        (err = imgstore_schema__uint(&ttl, root, &at, "channel_ttl_seconds", TTL_MIN, TTL_MAX,
                                     true)) < 0 ||
        (err = imgstore_schema__field(&roles, root, &at, "roles", JSON_OBJECT, true)) < 0)
        goto done;
    policy->channel_ttl_seconds = (int64_t)ttl;
    imgstore_schema__at_key(&roles_at, &at, "roles");
    if ((err = imgstore_schema__keys(roles, &roles_at, role_names)) < 0)
        goto done;
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        if ((err = imgstore_schema__field(&role, roles, &roles_at, role_names[r], JSON_OBJECT,
                                          true)) < 0)
            goto done;
        imgstore_schema__at_key(&role_at, &roles_at, role_names[r]);
        if ((err = read_role(&policy->roles[r], role, &role_at)) < 0)
            goto done;
    }
    *out = policy;
    policy = NULL;
done:
    imgstore_policy_free(policy);
    return err;
}

int imgstore_schema_policy_parse(imgstore_policy **out, const char *buf, size_t len)
{
    json_t *root = NULL;
    int err;

    if (!out)
        return imgstore_error_set(IMGSTORE_EINVALID, "policy: no place for the result");
    *out = NULL;
    if ((err = imgstore_schema__load(&root, "policy", buf, len, POLICY_MAX_BYTES)) < 0)
        return err;
    err = read_policy(out, root);
    json_decref(root);
    return err;
}

/* ---- writing -------------------------------------------------------------------------- */

static int build_role(json_t **out, const imgstore_policy_role *role, const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *obj = NULL;
    json_t *keys = NULL;
    int err;

    *out = NULL;
    /* The reader refuses too many keys; stop here before walking a bogus count. */
    if (role->key_count > IMGSTORE_POLICY_KEYS_MAX || (role->key_count > 0 && !role->keys)) {
        err = imgstore_schema__fail(at, "keys", "must hold 1 to %d keys, found %zu",
                                    IMGSTORE_POLICY_KEYS_MAX, role->key_count);
        goto done;
    }
    if (!(obj = json_object()) || !(keys = json_array())) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < role->key_count; i++) {
        imgstore_schema__at_index(&item, at, "keys", i);
        if (!role->keys[i]) {
            err = imgstore_schema__fail(&item, NULL, "missing");
            goto done;
        }
        if (!imgstore_schema__utf8_valid(role->keys[i], strlen(role->keys[i]))) {
            err = imgstore_schema__fail(&item, NULL, "not valid UTF-8");
            goto done;
        }
        if ((err = imgstore_schema__append_new(keys, json_string(role->keys[i]))) < 0)
            goto done;
    }
    err = imgstore_schema__set_new(obj, "keys", keys);
    keys = NULL;
    if (err < 0 || (err = imgstore_schema__set_uint(obj, at, "threshold", role->threshold)) < 0)
        goto done;
    *out = obj;
    obj = NULL;
done:
    json_decref(keys);
    json_decref(obj);
    return err;
}

/* Builds without validating: the caller runs read_policy() on the result when it must. */
static int build_policy(json_t **out, const imgstore_policy *policy)
{
    imgstore_schema__at at;
    imgstore_schema__at roles_at;
    imgstore_schema__at role_at;
    json_t *root = NULL;
    json_t *roles = NULL;
    json_t *role = NULL;
    int err;

    *out = NULL;
    imgstore_schema__at_root(&at, "policy");
    if (!policy) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "policy: none given");
        goto done;
    }
    if (!(root = json_object()) || !(roles = json_object())) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    imgstore_schema__at_key(&roles_at, &at, "roles");
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        imgstore_schema__at_key(&role_at, &roles_at, role_names[r]);
        if ((err = build_role(&role, &policy->roles[r], &role_at)) < 0 ||
            (err = imgstore_schema__set_new(roles, role_names[r], role)) < 0)
            goto done;
    }
    /* A negative TTL goes in as written, so the reader refuses it with its range. */
    if ((err = imgstore_schema__set_string(root, &at, "schema", IMGSTORE_POLICY_SCHEMA)) < 0 ||
        (err = imgstore_schema__set_uint(root, &at, "version", policy->version)) < 0 ||
        (err = imgstore_schema__set_new(root, "channel_ttl_seconds",
                                        json_integer(policy->channel_ttl_seconds))) < 0)
        goto done;
    err = imgstore_schema__set_new(root, "roles", roles);
    roles = NULL;
    if (err < 0)
        goto done;
    *out = root;
    root = NULL;
done:
    json_decref(roles);
    json_decref(root);
    return err;
}

json_t *imgstore_schema_policy_to_json(const imgstore_policy *policy)
{
    json_t *root;

    if (build_policy(&root, policy) < 0)
        return NULL;
    return root;
}

int imgstore_schema_policy_encode(char **out, size_t *len_out, const imgstore_policy *policy)
{
    imgstore_policy *checked = NULL;
    json_t *root = NULL;
    int err;

    if (!out || !len_out)
        return imgstore_error_set(IMGSTORE_EINVALID, "policy: no place for the result");
    *out = NULL;
    *len_out = 0;
    if ((err = build_policy(&root, policy)) < 0 || (err = read_policy(&checked, root)) < 0)
        goto done;
    err = imgstore_schema__dump(out, len_out, root, "policy", POLICY_MAX_BYTES);
done:
    imgstore_policy_free(checked);
    json_decref(root);
    return err;
}

bool imgstore_schema_policy_is_canonical(const char *buf, size_t len)
{
    imgstore_policy *policy = NULL;
    char *canonical = NULL;
    size_t canonical_len = 0;
    bool same = false;

    if (imgstore_schema_policy_parse(&policy, buf, len) == 0 &&
        imgstore_schema_policy_encode(&canonical, &canonical_len, policy) == 0)
        same = canonical_len == len && memcmp(canonical, buf, len) == 0;
    free(canonical);
    imgstore_policy_free(policy);
    return same;
}

/* ---- copying and editing -------------------------------------------------------------- */

int imgstore_schema_policy_copy(imgstore_policy **out, const imgstore_policy *policy)
{
    imgstore_policy *copy = NULL;
    int err = 0;

    if (!out)
        return imgstore_error_set(IMGSTORE_EINVALID, "policy: no place for the result");
    *out = NULL;
    if (!policy)
        return imgstore_error_set(IMGSTORE_EINVALID, "policy: none given");
    if (!(copy = calloc(1, sizeof(*copy)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    copy->version = policy->version;
    copy->channel_ttl_seconds = policy->channel_ttl_seconds;
    for (size_t r = 0; r < IMGSTORE_ROLE_COUNT; r++) {
        const imgstore_policy_role *from = &policy->roles[r];
        imgstore_policy_role *to = &copy->roles[r];

        to->threshold = from->threshold;
        if (from->key_count == 0)
            continue;
        if (!from->keys) {
            err = imgstore_error_set(IMGSTORE_EINVALID, "policy: roles.%s.keys: missing",
                                     role_names[r]);
            goto done;
        }
        if (!(to->keys = calloc(from->key_count, sizeof(*to->keys)))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        for (; to->key_count < from->key_count; to->key_count++) {
            const char *key = from->keys[to->key_count];

            if (key && !(to->keys[to->key_count] = strdup(key))) {
                err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                goto done;
            }
        }
    }
    *out = copy;
    copy = NULL;
done:
    imgstore_policy_free(copy);
    return err;
}

/* The role to edit with its location for messages, or IMGSTORE_EINVALID. */
static int edited_role(imgstore_policy_role **out, imgstore_schema__at *at, imgstore_policy *policy,
                       imgstore_role role)
{
    imgstore_schema__at roles_at;

    *out = NULL;
    if (!policy)
        return imgstore_error_set(IMGSTORE_EINVALID, "policy: none given");
    if ((unsigned)role >= IMGSTORE_ROLE_COUNT)
        return imgstore_error_set(IMGSTORE_EINVALID, "policy: role %d: not a role", (int)role);
    imgstore_schema__at_root(&roles_at, "policy");
    imgstore_schema__at_key(&roles_at, &roles_at, "roles");
    imgstore_schema__at_key(at, &roles_at, role_names[role]);
    *out = &policy->roles[role];
    if ((*out)->key_count > 0 && !(*out)->keys)
        return imgstore_schema__fail(at, "keys", "missing");
    return 0;
}

/* Index of the key of `role` with the base64 part of `line`, or key_count when none. */
static size_t find_key(const imgstore_policy_role *role, const char *line)
{
    size_t i = 0;

    while (i < role->key_count && !(role->keys[i] && same_key(role->keys[i], line)))
        i++;
    return i;
}

int imgstore_schema_policy_add_key(imgstore_policy *policy, imgstore_role role,
                                   const char *key_line)
{
    imgstore_policy_role *edited;
    imgstore_schema__at at;
    char **keys;
    char *copy;
    size_t found;
    int err;

    if ((err = edited_role(&edited, &at, policy, role)) < 0)
        return err;
    if (!key_line)
        return imgstore_schema__fail(&at, "keys", "no key given");
    if ((err = check_key_line(key_line, &at, "keys")) < 0)
        return err;
    if ((found = find_key(edited, key_line)) < edited->key_count)
        return imgstore_error_set(
            IMGSTORE_EEXISTS, "policy: roles.%s.keys[%zu]: " KEY_SHOWN " is already in the role",
            role_names[role], found, key_shown(key_line));
    if (edited->key_count >= IMGSTORE_POLICY_KEYS_MAX)
        return imgstore_schema__fail(&at, "keys", "already holds the %d keys allowed",
                                     IMGSTORE_POLICY_KEYS_MAX);
    if (!(copy = strdup(key_line)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (!(keys = realloc(edited->keys, (edited->key_count + 1) * sizeof(*keys)))) {
        free(copy);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    keys[edited->key_count++] = copy;
    edited->keys = keys;
    return 0;
}

int imgstore_schema_policy_remove_key(imgstore_policy *policy, imgstore_role role,
                                      const char *key_line)
{
    imgstore_policy_role *edited;
    imgstore_schema__at at;
    size_t found;
    int err;

    if ((err = edited_role(&edited, &at, policy, role)) < 0)
        return err;
    if (!key_line)
        return imgstore_schema__fail(&at, "keys", "no key given");
    if ((err = check_key_line(key_line, &at, "keys")) < 0)
        return err;
    if ((found = find_key(edited, key_line)) == edited->key_count)
        return imgstore_error_set(IMGSTORE_ENOTFOUND,
                                  "policy: roles.%s.keys: no " KEY_SHOWN " in the role",
                                  role_names[role], key_shown(key_line));
    /* A role without keys, or with fewer keys than signatures it needs, can never sign. */
    if (edited->key_count == 1)
        return imgstore_schema__fail(&at, "keys", KEY_SHOWN " is the last key of the role",
                                     key_shown(key_line));
    if (edited->key_count - 1 < edited->threshold)
        return imgstore_schema__fail(&at, "keys",
                                     "removing " KEY_SHOWN " would leave %zu keys for a threshold "
                                     "of %" PRIu32 "; lower the threshold first",
                                     key_shown(key_line), edited->key_count - 1, edited->threshold);
    free(edited->keys[found]);
    memmove(&edited->keys[found], &edited->keys[found + 1],
            (edited->key_count - found - 1) * sizeof(*edited->keys));
    edited->key_count--;
    return 0;
}

int imgstore_schema_policy_set_threshold(imgstore_policy *policy, imgstore_role role,
                                         uint32_t threshold)
{
    imgstore_policy_role *edited;
    imgstore_schema__at at;
    int err;

    if ((err = edited_role(&edited, &at, policy, role)) < 0)
        return err;
    if (threshold < 1)
        return imgstore_schema__fail(&at, "threshold", "must be at least 1");
    if (threshold > edited->key_count)
        return imgstore_schema__fail(&at, "threshold", "%" PRIu32 " is more than the %zu keys",
                                     threshold, edited->key_count);
    edited->threshold = threshold;
    return 0;
}
