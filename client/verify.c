/*
 * What the client checks before it believes a server (docs/security.md, "What a client
 * checks"): the policy chain from a pinned policy 1, release signatures on the exact manifest
 * bytes, deploy signatures, expiry and sequence on channel states. The server is only a
 * courier here: a compromised one can refuse service or serve an old state until it expires,
 * but cannot make the client accept a byte no threshold of keys signed.
 *
 * The checks themselves are trust/'s pure functions; this file fetches, pins and applies
 * them. Moved from cli/remote_trust.c (#11). Not here: HTTP details (http.c), writing files
 * (the caller's: cli/remote_pull.c).
 */
#include "client/client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool is_hex(const char *text, size_t len)
{
    if (!text || strlen(text) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
            return false;
    }
    return true;
}

/* ---- pins ----------------------------------------------------------------------------- */

static char *pins_dir(const imgstore_client *client)
{
    char *base = NULL, *dir;

    if (client->state_dir)
        return imgstore_strfmt("%s/pins", client->state_dir);
    if (imgstore_trust_state_dir(&base) < 0)
        return NULL;
    dir = imgstore_strfmt("%s/pins", base);
    free(base);
    return dir;
}

/* The remembered sha256 of policy 1 for `store_id` into pin (65 bytes); "" when none. */
static int pin_read(char pin[65], const imgstore_client *client, const char *store_id)
{
    char *dir = pins_dir(client), *path = dir ? imgstore_strfmt("%s/%s", dir, store_id) : NULL;
    char line[128] = "";
    FILE *f;
    int err = 0;

    pin[0] = '\0';
    if (!path) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    } else if ((f = fopen(path, "r"))) {
        if (fgets(line, sizeof(line), f))
            line[strcspn(line, "\r\n")] = '\0';
        fclose(f);
        if (!is_hex(line, 64))
            err = imgstore_error_set(IMGSTORE_EINVALID, "%s: not a sha256; remove it to pin again",
                                     path);
        else
            memcpy(pin, line, 65);
    } else if (errno != ENOENT) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", path, strerror(errno));
    }
    free(path);
    free(dir);
    return err;
}

/* Remember `pin` for `store_id`: temp file, fsync, rename, as every durable write. */
static int pin_write(const imgstore_client *client, const char *store_id, const char *pin)
{
    char *dir = pins_dir(client), *path = NULL, line[66];
    int err;

    if (!dir || !(path = imgstore_strfmt("%s/%s", dir, store_id))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    snprintf(line, sizeof(line), "%.64s\n", pin);
    if ((err = imgstore_client__mkdirs(dir)) == 0)
        err = imgstore_file_replace(path, line, strlen(line), 0600);
done:
    free(path);
    free(dir);
    return err;
}

/* ---- the policy chain ----------------------------------------------------------------- */

/* Armored signatures of a JSON array (strings only), as a NULL-safe string array. */
static int signatures_from_json(char ***out, size_t *count_out, json_t *array, const char *what)
{
    size_t count = json_array_size(array), i;
    char **sigs;

    *out = NULL;
    *count_out = 0;
    if (!json_is_array(array) || count > IMGSTORE_POLICY_KEYS_MAX * 4)
        return imgstore_error_set(IMGSTORE_EVERIFY, "%s: signatures: expected a short array", what);
    if (!(sigs = calloc(count + 1, sizeof(*sigs))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (i = 0; i < count; i++) {
        const char *text = json_string_value(json_array_get(array, i));

        if (!text || !(sigs[i] = strdup(text))) {
            imgstore_strings_free(sigs, i);
            return imgstore_error_set(IMGSTORE_EVERIFY, "%s: signature %zu is not a string", what,
                                      i + 1);
        }
    }
    *out = sigs;
    *count_out = count;
    return 0;
}

int imgstore_client_policy_load(imgstore_client *client)
{
    struct {
        char store_id[41];
        char tip[41];
        imgstore_policy *policy;
        uint64_t policy_count;
    } loaded, *out = &loaded;
    imgstore_policy_link *links = NULL;
    json_t *body = NULL, *policies;
    const char *store_id, *tip;
    char remembered[65], first_sha[65];
    const char *pin = NULL;
    size_t count = 0;
    int err;

    memset(&loaded, 0, sizeof(loaded));
    if ((err = imgstore_client_get_json(&body, client, "/v1/trust")) < 0)
        goto done;
    store_id = json_string_value(json_object_get(body, "store_id"));
    tip = json_string_value(json_object_get(body, "tip"));
    policies = json_object_get(body, "policies");
    /* the store id names a file on this machine: only ever 40 hex digits */
    if (!is_hex(store_id, 40) || (tip && !is_hex(tip, 40)) || !json_is_array(policies) ||
        json_array_size(policies) == 0 ||
        json_array_size(policies) > IMGSTORE_CLIENT__POLICIES_MAX) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "/v1/trust: malformed answer from %s",
                                 client->url);
        goto done;
    }
    memcpy(out->store_id, store_id, 41);
    if (tip)
        memcpy(out->tip, tip, 41);
    if (!(links = calloc(json_array_size(policies), sizeof(*links)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (; count < json_array_size(policies); count++) {
        json_t *row = json_array_get(policies, count);
        json_t *version = json_object_get(row, "version");
        const char *text = json_string_value(json_object_get(row, "policy"));

        if (!json_is_integer(version) || json_integer_value(version) < 1 || !text) {
            err = imgstore_error_set(IMGSTORE_EVERIFY, "/v1/trust: policy %zu is malformed",
                                     count + 1);
            goto done;
        }
        links[count].version = (uint64_t)json_integer_value(version);
        links[count].policy_len = json_string_length(json_object_get(row, "policy"));
        if (!(links[count].policy = malloc(links[count].policy_len + 1))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        memcpy(links[count].policy, text, links[count].policy_len + 1);
        if ((err = signatures_from_json(&links[count].signatures, &links[count].signature_count,
                                        json_object_get(row, "signatures"), "/v1/trust")) < 0) {
            count++;
            goto done;
        }
    }
    if ((err = pin_read(remembered, client, out->store_id)) < 0)
        goto done;
    pin = client->pin ? client->pin : (remembered[0] ? remembered : NULL);
    if ((err = imgstore_trust_policy_chain_verify(&out->policy, links, count, pin)) < 0) {
        err = imgstore_error_wrap(IMGSTORE_EVERIFY,
                                  "trust policy of %s (store %.12s): ", client->url, out->store_id);
        goto done;
    }
    out->policy_count = count;
    /* trust on first use: the first policy seen under this store id is the one from now on */
    if (!remembered[0]) {
        if ((err = imgstore_sha256_hex(first_sha, links[0].policy, links[0].policy_len)) < 0 ||
            (err = pin_write(client, out->store_id, first_sha)) < 0)
            goto done;
    }
    /* a reload replaces what the handle held only once the new chain verified */
    imgstore_policy_free(client->policy);
    memcpy(client->store_id, out->store_id, sizeof(client->store_id));
    memcpy(client->tip, out->tip, sizeof(client->tip));
    client->policy = out->policy;
    client->policy_count = out->policy_count;
    client->loaded = true;
    out->policy = NULL;
done:
    imgstore_policy_chain_free(links, count);
    json_decref(body);
    imgstore_policy_free(out->policy);
    return err;
}

int imgstore_client__policy(const imgstore_policy **out, imgstore_client *client)
{
    int err = client->loaded ? 0 : imgstore_client_policy_load(client);

    *out = err == 0 ? client->policy : NULL;
    return err;
}

const imgstore_policy *imgstore_client_policy(const imgstore_client *client)
{
    return client->policy;
}

uint64_t imgstore_client_policy_count(const imgstore_client *client)
{
    return client->policy_count;
}

const char *imgstore_client_store_id(const imgstore_client *client)
{
    return client->store_id;
}

/* ---- manifests ------------------------------------------------------------------------ */

static int fetch_signatures(char ***out, size_t *count_out, imgstore_client *client,
                            const char *path)
{
    json_t *body = NULL;
    int err;

    if ((err = imgstore_client_get_json(&body, client, path)) == 0)
        err = signatures_from_json(out, count_out, json_object_get(body, "signatures"), path);
    json_decref(body);
    return err;
}

int imgstore_client_manifest_fetch(imgstore_client_manifest *out, imgstore_client *client,
                                   const char *name, const char *version, bool require_trusted)
{
    const imgstore_policy *policy = NULL;
    char *path = NULL, **sigs = NULL;
    size_t sig_count = 0;
    int err;

    memset(out, 0, sizeof(*out));
    if ((err = imgstore_client_check_names(name, version, NULL)) < 0 ||
        (err = imgstore_client__policy(&policy, client)) < 0)
        return err;
    if (!(path = imgstore_strfmt("/v1/images/%s/%s/manifest", name, version))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_client__get_bytes(&out->bytes, &out->len, client, path,
                                          IMGSTORE_MANIFEST_MAX_BYTES)) < 0)
        goto done;
    free(path);
    if (!(path = imgstore_strfmt("/v1/images/%s/%s/signatures", name, version))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = fetch_signatures(&sigs, &sig_count, client, path)) < 0)
        goto done;
    if ((err = imgstore_sha256_hex(out->sha256, out->bytes, out->len)) < 0)
        goto done;
    /* the bytes signed are the bytes stored: anything else is not the signed manifest */
    if (!imgstore_schema_manifest_is_canonical(out->bytes, out->len) ||
        imgstore_schema_manifest_parse(&out->manifest, out->bytes, out->len) < 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s: the server's manifest is damaged or not canonical", name,
                                 version);
        goto done;
    }
    /* a validly signed manifest of another version is a swap, not this version */
    if (strcmp(out->manifest->name, name) != 0 || strcmp(out->manifest->version, version) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s: the server sent the manifest of %s %s instead", name,
                                 version, out->manifest->name, out->manifest->version);
        goto done;
    }
    if ((err = imgstore_trust_signatures_count(&out->status, policy, IMGSTORE_ROLE_RELEASE,
                                               (const char *const *)sigs, sig_count, out->bytes,
                                               out->len)) < 0)
        goto done;
    if (require_trusted && !out->status.trusted)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s has %zu of the %u release signatures it needs", name,
                                 version, out->status.valid, out->status.threshold);
done:
    imgstore_strings_free(sigs, sig_count);
    free(path);
    if (err < 0)
        imgstore_client_manifest_clear(out);
    return err;
}

void imgstore_client_manifest_clear(imgstore_client_manifest *m)
{
    imgstore_manifest_free(m->manifest);
    free(m->bytes);
    memset(m, 0, sizeof(*m));
}

int imgstore_client_manifest_get_trusted(imgstore_manifest **out, char *digest_out,
                                         imgstore_client *client, const char *name,
                                         const char *version)
{
    imgstore_client_manifest m;
    int err;

    *out = NULL;
    if ((err = imgstore_client_manifest_fetch(&m, client, name, version, true)) < 0)
        return err;
    if (digest_out)
        memcpy(digest_out, m.sha256, sizeof(m.sha256));
    *out = m.manifest;
    m.manifest = NULL;
    imgstore_client_manifest_clear(&m);
    return 0;
}

/* ---- channel states ------------------------------------------------------------------- */

int imgstore_client_state_check(imgstore_channel_state **out, imgstore_trust_status *status_out,
                                imgstore_client *client, json_t *signed_state, const char *name,
                                const char *channel, const char *what)
{
    const imgstore_policy *policy = NULL;
    imgstore_channel_state *state = NULL;
    imgstore_trust_status status;
    const char *text = json_string_value(json_object_get(signed_state, "state"));
    size_t len = json_string_length(json_object_get(signed_state, "state"));
    char **sigs = NULL;
    size_t sig_count = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_client__policy(&policy, client)) < 0)
        return err;
    if (!text || imgstore_schema_channel_parse(&state, text, len) < 0)
        return imgstore_error_set(IMGSTORE_EVERIFY, "%s/%s: %s: the channel state is damaged", name,
                                  channel, what);
    if ((err = signatures_from_json(&sigs, &sig_count, json_object_get(signed_state, "signatures"),
                                    what)) < 0 ||
        (err = imgstore_trust_signatures_count(&status, policy, IMGSTORE_ROLE_DEPLOY,
                                               (const char *const *)sigs, sig_count, text, len)) <
            0)
        goto done;
    if (!status.trusted) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: %s: the channel state has %zu of the %u deploy "
                                 "signatures it needs",
                                 name, channel, what, status.valid, status.threshold);
        goto done;
    }
    if (strcmp(state->name, name) != 0 || strcmp(state->channel, channel) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: %s: the server sent the state of %s/%s instead", name,
                                 channel, what, state->name, state->channel);
        goto done;
    }
    *out = state;
    state = NULL;
    if (status_out)
        *status_out = status;
done:
    imgstore_strings_free(sigs, sig_count);
    imgstore_channel_state_free(state);
    return err;
}

int imgstore_client_channel_get(imgstore_channel_state **out, imgstore_trust_status *status_out,
                                imgstore_client *client, const char *name, const char *channel,
                                bool allow_expired)
{
    imgstore_channel_state *state = NULL;
    json_t *body = NULL;
    char *path = NULL;
    int64_t expires = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_client_check_names(name, NULL, channel)) < 0)
        return err;
    if (!(path = imgstore_strfmt("/v1/channels/%s/%s/signed", name, channel))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_client_get_json(&body, client, path)) < 0 ||
        (err = imgstore_client_state_check(&state, status_out, client, body, name, channel, path)) <
            0)
        goto done;
    /* a frozen mirror keeps serving an old state: it stops counting when it expires */
    if (!allow_expired && (!state->expires || imgstore_time_parse(&expires, state->expires) < 0 ||
                           expires <= (int64_t)time(NULL))) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: the channel state expired at %s (a server that stopped "
                                 "updating, or a channel nobody re-deployed)",
                                 name, channel, state->expires ? state->expires : "(no expiry)");
        goto done;
    }
    if ((err = imgstore_trust_seen_update(client->state_dir, client->store_id, state)) < 0)
        goto done;
    *out = state;
    state = NULL;
done:
    imgstore_channel_state_free(state);
    json_decref(body);
    free(path);
    return err;
}
