/*
 * Signed documents for clients that verify everything themselves (docs/security.md): the
 * policy chain with the store's identity and tip, a version's exact manifest bytes and its
 * release signatures, a channel's exact state bytes and deploy signatures; and the two
 * writes such a client makes with its own keys: adding a release signature to a stored
 * version, and committing a channel state it built and signed. Documents are handed out as
 * the exact stored bytes (JSON strings where they sit inside an answer), never re-encoded,
 * because those bytes are what the signatures cover.
 *
 * The store checks every signature and every rule of a state; this file parses the request
 * bodies, maps a signature the store refuses to 403 "untrusted_key" (the route table marks
 * these routes client_signed, docs/api.md) and wakes long-polls after a move.
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The server's own key signs the commit when it has one; else the commit is unsigned. */
static const imgstore_sign_key *commit_key(const imgstore_server *server)
{
    return server->signers.count ? server->signers.keys[0] : NULL;
}

static json_t *strings_json(char **strings, size_t count)
{
    json_t *array = json_array();

    for (size_t i = 0; array && i < count; i++) {
        if (json_array_append_new(array, json_string(strings[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static int check_version_names(const imgstore_server__request *req)
{
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, req->segments[2])) < 0)
        return err;
    return imgstore_schema_check_name(IMGSTORE_NAME_VERSION, req->segments[3]);
}

static int check_channel_names(const imgstore_server__request *req)
{
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, req->segments[2])) < 0)
        return err;
    return imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, req->segments[3]);
}

/* GET /v1/trust */
enum MHD_Result imgstore_server__route_trust(imgstore_server__request *req)
{
    imgstore_policy_link *links = NULL;
    imgstore_store *store;
    size_t count = 0;
    char store_id[41], tip[41];
    json_t *policies = NULL;
    enum MHD_Result result;
    int err;

    if (imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_id(store_id, store)) < 0 ||
        (err = imgstore_store_tip_id(tip, store)) < 0 ||
        (err = imgstore_store_policy_chain(&links, &count, store)) < 0)
        return imgstore_server__reply_error(req, err);
    policies = json_array();
    for (size_t i = 0; policies && i < count; i++) {
        json_t *link = json_pack("{s:I, s:s%, s:o*}", "version", (json_int_t)links[i].version,
                                 "policy", links[i].policy, links[i].policy_len, "signatures",
                                 strings_json(links[i].signatures, links[i].signature_count));

        if (!link || json_array_append_new(policies, link) < 0) {
            json_decref(policies);
            policies = NULL;
        }
    }
    imgstore_policy_chain_free(links, count);
    if (!policies)
        return imgstore_server__reply_error(
            req, imgstore_error_set(IMGSTORE_ERROR, "cannot encode the policies"));
    return imgstore_server__reply_json(
        req, MHD_HTTP_OK,
        json_pack("{s:s, s:s, s:o}", "store_id", store_id, "tip", tip, "policies", policies));
}

/* GET /v1/images/{name}/{version}/manifest: the exact bytes, immutable like the files */
enum MHD_Result imgstore_server__route_manifest(imgstore_server__request *req)
{
    imgstore_store *store;
    imgstore_sha256 *sha = NULL;
    char *bytes = NULL, **sigs = NULL, digest[65], etag[68];
    size_t len = 0, sig_count = 0;
    enum MHD_Result result;
    int err;

    if ((err = check_version_names(req)) < 0)
        return imgstore_server__reply_error(req, err);
    if (imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_manifest_signed(&bytes, &len, &sigs, &sig_count, store,
                                              req->segments[2], req->segments[3])) < 0 ||
        (err = imgstore_sha256_new(&sha)) < 0) {
        free(bytes);
        imgstore_strings_free(sigs, sig_count);
        return imgstore_server__reply_error(req, err);
    }
    imgstore_sha256_update(sha, bytes, len);
    imgstore_sha256_final_hex(sha, digest);
    imgstore_sha256_free(sha);
    imgstore_strings_free(sigs, sig_count);
    snprintf(etag, sizeof(etag), "\"%s\"", digest);
    result = imgstore_server__reply_body(req, MHD_HTTP_OK, bytes, len, "application/json",
                                         "public, max-age=31536000, immutable", etag);
    free(bytes);
    return result;
}

/* GET /v1/images/{name}/{version}/signatures: may grow, so not immutable */
enum MHD_Result imgstore_server__route_signatures(imgstore_server__request *req)
{
    imgstore_store *store;
    char *bytes = NULL, **sigs = NULL;
    size_t len = 0, sig_count = 0;
    json_t *list;
    enum MHD_Result result;
    int err;

    if ((err = check_version_names(req)) < 0)
        return imgstore_server__reply_error(req, err);
    if (imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_manifest_signed(&bytes, &len, &sigs, &sig_count, store,
                                              req->segments[2], req->segments[3])) < 0)
        return imgstore_server__reply_error(req, err);
    list = strings_json(sigs, sig_count);
    free(bytes);
    imgstore_strings_free(sigs, sig_count);
    return imgstore_server__reply_json(req, MHD_HTTP_OK,
                                       list ? json_pack("{s:o}", "signatures", list) : NULL);
}

/*
 * The request body: a JSON object whose members are all in `allowed` and all present, each
 * a non-empty string ("s") or an array of at most MAX_SIGNATURES non-empty strings ("a").
 */
#define MAX_SIGNATURES 64

static int parse_body(json_t **out, const imgstore_server__request *req, const char *const *keys,
                      const char *types)
{
    json_error_t jerr;
    json_t *body;
    size_t n = strlen(types);

    *out = NULL;
    if (!(body =
              json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr)))
        return imgstore_error_set(IMGSTORE_EINVALID, "request body: %s (line %d)", jerr.text,
                                  jerr.line);
    if (!json_is_object(body) || json_object_size(body) != n) {
        json_decref(body);
        return imgstore_error_set(IMGSTORE_EINVALID, "request body: expected an object with "
                                                     "exactly the documented members");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *value = json_object_get(body, keys[i]);
        bool ok = value != NULL;

        if (ok && types[i] == 's')
            ok = json_is_string(value) && json_string_length(value) > 0;
        if (ok && types[i] == 'a') {
            size_t at;
            json_t *item;

            /* none is not malformed: it is too few, which the store answers (403) */
            ok = json_is_array(value) && json_array_size(value) <= MAX_SIGNATURES;
            json_array_foreach(value, at, item)
            {
                ok = ok && json_is_string(item) && json_string_length(item) > 0;
            }
        }
        if (!ok) {
            json_decref(body);
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      types[i] == 's'
                                          ? "request body: %s must be a non-empty string"
                                          : "request body: %s must be an array of at most 64 "
                                            "non-empty strings",
                                      keys[i]);
        }
    }
    *out = body;
    return 0;
}

/* POST /v1/images/{name}/{version}/signatures {"signature": "<armored SSHSIG>"} */
enum MHD_Result imgstore_server__route_sign(imgstore_server__request *req)
{
    static const char *const keys[] = {"signature"};
    const char *name = req->segments[2], *version = req->segments[3];
    imgstore_trust_status status = {0};
    imgstore_store *store;
    json_t *body = NULL, *signature;
    int err;

    if ((err = check_version_names(req)) < 0 || (err = parse_body(&body, req, keys, "s")) < 0)
        return imgstore_server__reply_error(req, err);
    signature = json_object_get(body, "signature");
    if ((err = imgstore_server__store(&store, req)) == 0)
        err = imgstore_store_add_signature(
            &status, store, name, version, json_string_value(signature),
            json_string_length(signature), commit_key(req->server), imgstore_server__actor(req));
    json_decref(body);
    if (err < 0)
        return imgstore_server__reply_error(req, err);
    return imgstore_server__reply_json(
        req, MHD_HTTP_OK,
        json_pack("{s:s, s:s, s:I, s:I, s:b}", "name", name, "version", version, "signatures",
                  (json_int_t)status.valid, "threshold", (json_int_t)status.threshold, "trusted",
                  status.trusted));
}

/* GET /v1/channels/{name}/{channel}/signed */
enum MHD_Result imgstore_server__route_channel_signed(imgstore_server__request *req)
{
    imgstore_store *store;
    char *bytes = NULL, **sigs = NULL;
    size_t len = 0, sig_count = 0;
    json_t *list;
    enum MHD_Result result;
    int err;

    if ((err = check_channel_names(req)) < 0)
        return imgstore_server__reply_error(req, err);
    if (imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_channel_signed(&bytes, &len, &sigs, &sig_count, store,
                                             req->segments[2], req->segments[3])) < 0)
        return imgstore_server__reply_error(req, err);
    list = strings_json(sigs, sig_count);
    result = imgstore_server__reply_json(
        req, MHD_HTTP_OK,
        list ? json_pack("{s:s%, s:o}", "state", bytes, len, "signatures", list) : NULL);
    free(bytes);
    imgstore_strings_free(sigs, sig_count);
    return result;
}

/* POST /v1/channels/{name}/{channel}/signed {"state": "<canonical JSON>", "signatures": [...]} */
enum MHD_Result imgstore_server__route_channel_put_signed(imgstore_server__request *req)
{
    static const char *const keys[] = {"state", "signatures"};
    imgstore_channel_state *state = NULL, *claimed = NULL;
    const char *armored[MAX_SIGNATURES];
    imgstore_store *store;
    json_t *body = NULL, *state_json, *sigs, *item;
    size_t count = 0, at;
    int err;

    if ((err = check_channel_names(req)) < 0 || (err = parse_body(&body, req, keys, "sa")) < 0)
        return imgstore_server__reply_error(req, err);
    state_json = json_object_get(body, "state");
    sigs = json_object_get(body, "signatures");
    json_array_foreach(sigs, at, item)
    {
        armored[count++] = json_string_value(item);
    }
    /* the state names its image and channel: it must be the one in the path */
    err = imgstore_schema_channel_parse(&claimed, json_string_value(state_json),
                                        json_string_length(state_json));
    if (err == 0 && (strcmp(claimed->name, req->segments[2]) != 0 ||
                     strcmp(claimed->channel, req->segments[3]) != 0))
        err =
            imgstore_error_set(IMGSTORE_EINVALID, "the state is for %s/%s, not %s/%s",
                               claimed->name, claimed->channel, req->segments[2], req->segments[3]);
    imgstore_channel_state_free(claimed);
    if (err == 0 && (err = imgstore_server__store(&store, req)) == 0)
        err = imgstore_store_channel_put_signed(
            &state, store, json_string_value(state_json), json_string_length(state_json), armored,
            count, commit_key(req->server), imgstore_server__actor(req));
    json_decref(body);
    if (err < 0) {
        imgstore_channel_state_free(state);
        return imgstore_server__reply_error(req, err);
    }
    imgstore_server__channels_changed(req->server);
    body = imgstore_schema_channel_to_json(state);
    imgstore_channel_state_free(state);
    return imgstore_server__reply_json(req, MHD_HTTP_OK, body);
}
