/*
 * Read-only image routes: the image list, one image's versions (newest first) and
 * channels, and one version's manifest with its digest. The JSON shapes match the CLI's
 * `ls --json` and `show --json` (schema/api_*.schema.json). File bytes are route_files.c.
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {"prod": "1.4.0", ...}: what each channel of `name` runs. `strict`: a channel state that
 * cannot be read fails the answer (one image: what remote verify relies on to see every
 * channel, issue #10), else it is left out (the list of all images stays usable). */
static int channels_json(json_t **out, imgstore_store *store, const char *name, bool strict)
{
    char **channels = NULL;
    size_t count = 0;
    json_t *object = json_object();
    int err;

    *out = NULL;
    if (!object)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((err = imgstore_store_list_channels(&channels, &count, store, name)) < 0) {
        json_decref(object);
        return err;
    }
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_channel_state *state = NULL;

        if ((err = imgstore_store_channel_get(&state, store, name, channels[i])) == 0)
            json_object_set_new(object, channels[i], json_string(state->version));
        else if (!strict)
            err = 0;
        imgstore_channel_state_free(state);
    }
    imgstore_strings_free(channels, count);
    if (err < 0) {
        json_decref(object);
        return err;
    }
    *out = object;
    return 0;
}

enum MHD_Result imgstore_server__route_images(imgstore_server__request *req)
{
    imgstore_store *store;
    char **names = NULL;
    size_t count = 0;
    json_t *images;
    enum MHD_Result result;
    int err;

    if (imgstore_server__answer_cached(req, &result))
        return result;
    images = json_array();
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_list_images(&names, &count, store)) < 0)
        goto done;
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_version_row *newest = NULL;
        size_t version_count = 0, rows = 0;
        json_t *channels = NULL;

        /* the newest row and the count: one index read per image */
        if ((err = imgstore_store_versions_page(&newest, &rows, &version_count, store, names[i],
                                                SIZE_MAX, 1)) < 0 ||
            (err = channels_json(&channels, store, names[i], false)) < 0) {
            imgstore_version_rows_free(newest, rows);
            break;
        }
        json_array_append_new(images, json_pack("{s:s, s:I, s:s, s:o}", "name", names[i],
                                                "versions", (json_int_t)version_count, "newest",
                                                newest[0].version, "channels", channels));
        imgstore_version_rows_free(newest, rows);
    }
done:
    imgstore_strings_free(names, count);
    if (err < 0) {
        json_decref(images);
        return imgstore_server__reply_error(req, err);
    }
    return imgstore_server__reply_json(req, MHD_HTTP_OK, json_pack("{s:o}", "images", images));
}

/* A page of versions when the client names none: bounded, whatever the image holds. */
#define VERSIONS_PAGE     100
#define VERSIONS_PAGE_MAX 1000

/* ?sort=: "time" (absent: the default) or "name"; 0 or IMGSTORE_EINVALID. */
static int sort_by_name(bool *out, imgstore_server__request *req)
{
    const char *sort = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "sort");

    *out = sort && strcmp(sort, "name") == 0;
    if (sort && !*out && strcmp(sort, "time") != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "query sort: time or name");
    return 0;
}

enum MHD_Result imgstore_server__route_image(imgstore_server__request *req)
{
    const char *name = req->segments[2];
    imgstore_version_row *rows = NULL;
    imgstore_store *store;
    size_t count = 0, total = 0;
    uint64_t limit = VERSIONS_PAGE, before = SIZE_MAX;
    char *after = NULL;
    bool by_name = false, more = false;
    json_t *list = NULL, *channels = NULL, *next;
    enum MHD_Result result;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = sort_by_name(&by_name, req)) < 0)
        return imgstore_server__reply_error(req, err);
    /* ?limit=N&before=ROW: a page of the version index (issue #9); with sort=name,
     * before=VERSION: the versions after it in bytewise order, a page of the name index */
    if (((err = imgstore_server__query_u64(&limit, req, "limit")) < 0 &&
         err != IMGSTORE_ENOTFOUND) ||
        (!by_name && (err = imgstore_server__query_u64(&before, req, "before")) < 0 &&
         err != IMGSTORE_ENOTFOUND))
        return imgstore_server__reply_error(req, err);
    if (!by_name && err == IMGSTORE_ENOTFOUND && before == 0)
        before = SIZE_MAX;
    if (!MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "limit"))
        limit = VERSIONS_PAGE;
    if (limit == 0 || limit > VERSIONS_PAGE_MAX)
        return imgstore_server__reply_error(
            req, imgstore_error_set(IMGSTORE_EINVALID, "query limit: 1 to %d", VERSIONS_PAGE_MAX));
    if (by_name && MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "before") &&
        !(after = imgstore_server__query_string(req, "before")))
        return imgstore_server__reply_error(
            req, imgstore_error_set(IMGSTORE_EINVALID, "query before: a malformed escape"));
    if (imgstore_server__answer_cached(req, &result)) {
        free(after);
        return result;
    }
    list = json_array();
    if ((err = imgstore_server__store(&store, req)) < 0)
        goto done;
    if (by_name)
        err = imgstore_store_versions_by_name(&rows, &count, &total, &more, store, name,
                                              after && *after ? after : NULL, (size_t)limit);
    else
        err = imgstore_store_versions_page(&rows, &count, &total, store, name,
                                           before > SIZE_MAX ? SIZE_MAX : (size_t)before,
                                           (size_t)limit);
    if (err < 0 || (err = channels_json(&channels, store, name, true)) < 0)
        goto done;
    for (size_t i = 0; i < count; i++)
        json_array_append_new(list, imgstore_store_version_row_to_json(&rows[i]));
done:
    free(after);
    if (err < 0) {
        imgstore_version_rows_free(rows, count);
        json_decref(list);
        json_decref(channels);
        return imgstore_server__reply_error(req, err);
    }
    /* "next" is the before= of the next page: the row it ended at, or with sort=name its
     * last version */
    if (by_name)
        next = more && count ? json_string(rows[count - 1].version) : json_null();
    else
        next = count && rows[count - 1].row > 0 ? json_integer((json_int_t)rows[count - 1].row)
                                                : json_null();
    result = imgstore_server__reply_json(req, MHD_HTTP_OK,
                                         json_pack("{s:s, s:o, s:o, s:I, s:o}", "name", name,
                                                   "versions", list, "channels", channels, "total",
                                                   (json_int_t)total, "next", next));
    imgstore_version_rows_free(rows, count);
    return result;
}

enum MHD_Result imgstore_server__route_version(imgstore_server__request *req)
{
    const char *name = req->segments[2], *version = req->segments[3];
    imgstore_store *store;
    imgstore_manifest *m = NULL;
    imgstore_trust_status trust;
    json_t *manifest_json, *body;
    char digest[65], etag[100], *text;
    enum MHD_Result result;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0)
        return imgstore_server__reply_error(req, err);
    if (imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_manifest_get(&m, digest, store, name, version)) < 0)
        return imgstore_server__reply_error(req, err);
    err = imgstore_store_version_trust(&trust, store, name, version);
    manifest_json = err == 0 ? imgstore_schema_manifest_to_json(m) : NULL;
    imgstore_manifest_free(m);
    if (err < 0)
        return imgstore_server__reply_error(req, err);
    if (!manifest_json)
        return imgstore_server__reply_error(req, IMGSTORE_ERROR);
    /* the manifest never changes but its signatures may: clients validate both */
    snprintf(etag, sizeof(etag), "\"%s.%zu.%u\"", digest, trust.valid, trust.threshold);
    /* reply_body answers If-None-Match, with the Content-Length of this body */
    body = json_pack("{s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I, s:b}}", "name", name, "version",
                     version, "manifest_sha256", digest, "manifest", manifest_json, "trust",
                     "valid", (json_int_t)trust.valid, "threshold", (json_int_t)trust.threshold,
                     "invalid", (json_int_t)trust.invalid, "trusted", trust.trusted);
    text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(body);
    if (!text)
        return imgstore_server__reply_error(req, IMGSTORE_ERROR);
    result = imgstore_server__reply_body(req, MHD_HTTP_OK, text, strlen(text), "application/json",
                                         "no-cache", etag);
    free(text);
    return result;
}
