/*
 * `which` (issue #12): every image, version and channel that held a file's bytes, found
 * through the digest index (index/digests/<xx>/<yy>, index.c) instead of a walk of all
 * versions; the channels from the images' channel states (now, and their rollback stacks)
 * and, when asked, from the channels' histories.
 *
 * The same index answers the OCI API's digest lookups (issue #12, docs/oci.md): besides the
 * files, a push adds a row for the version's OCI config blob and OCI manifest, whose
 * rendering (schema/oci.c) is a pure function of the manifest.
 *
 * Not here: hashing the file (the caller streams it through imgstore_sha256), the index
 * itself (index.c).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows a digest lookup reads past the first match looking for a stored version: rows of
 * pruned versions stay in the index (docs/format.md) */
#define DIGEST_SCAN_ROWS 4096

void imgstore_where_free(imgstore_where *rows, size_t count)
{
    for (size_t i = 0; rows && i < count; i++) {
        free(rows[i].name);
        free(rows[i].version);
        free(rows[i].path);
        imgstore_strings_free(rows[i].running, rows[i].running_count);
        imgstore_strings_free(rows[i].stacked, rows[i].stacked_count);
        imgstore_strings_free(rows[i].ran, rows[i].ran_count);
    }
    free(rows);
}

/* Add `channel` to a list once. */
static int list_add(char ***list, size_t *count, const char *channel)
{
    char **grown;

    for (size_t i = 0; i < *count; i++)
        if (strcmp((*list)[i], channel) == 0)
            return 0;
    if (!(grown = realloc(*list, (*count + 1) * sizeof(*grown))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    *list = grown;
    if (!(grown[*count] = strdup(channel)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    (*count)++;
    return 0;
}

/* The channels of the rows' image `name` (rows [first, end) are its versions). */
static int channels_of(imgstore_where *rows, size_t first, size_t end, imgstore_store *store,
                       const git_tree *tip, const char *name, bool history)
{
    char path[256], **channels = NULL;
    size_t count = 0;
    int err;

    snprintf(path, sizeof(path), "channels/%s", name);
    if ((err = imgstore_store__list_tree(&channels, &count, store, tip, path, ".json")) ==
        IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        return 0;
    }
    for (size_t c = 0; c < count && err == 0; c++) {
        imgstore_channel_state *state = NULL;

        if ((err = imgstore_store__channel_load(&state, store, tip, name, channels[c])) < 0)
            break;
        for (size_t r = first; r < end && err == 0; r++) {
            if (strcmp(state->version, rows[r].version) == 0)
                err = list_add(&rows[r].running, &rows[r].running_count, channels[c]);
            for (size_t k = 0; k < state->stack_count && err == 0; k++)
                if (strcmp(state->stack[k], rows[r].version) == 0)
                    err = list_add(&rows[r].stacked, &rows[r].stacked_count, channels[c]);
        }
        imgstore_channel_state_free(state);
        if (err == 0 && history) {
            imgstore_history_query q = {.channel = channels[c]};
            imgstore_history_entry *entries = NULL;
            size_t entry_count = 0;

            if ((err = imgstore_store_history_query(&entries, &entry_count, NULL, store, name,
                                                    &q)) < 0)
                break;
            for (size_t e = 0; e < entry_count && err == 0; e++)
                for (size_t r = first; r < end && err == 0; r++)
                    if (entries[e].version && strcmp(entries[e].version, rows[r].version) == 0)
                        err = list_add(&rows[r].ran, &rows[r].ran_count, channels[c]);
            imgstore_history_free(entries, entry_count);
        }
    }
    imgstore_strings_free(channels, count);
    return err;
}

static int where_cmp(const void *a, const void *b)
{
    const imgstore_where *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c                                ? c
           : strcmp(x->version, y->version) ? strcmp(x->version, y->version)
                                            : strcmp(x->path, y->path);
}

int imgstore_store_which(imgstore_where **out, size_t *count_out, imgstore_store *store,
                         const char *sha256, bool history)
{
    imgstore_where *rows = NULL;
    git_tree *tip = NULL;
    char **found = NULL;
    size_t found_count = 0, n = 0;
    int err;

    *out = NULL;
    *count_out = 0;
    if (!sha256 || strlen(sha256) != 64 || strspn(sha256, "0123456789abcdef") != 64)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "'%.80s' is not a SHA-256 (64 lower-case hex digits)",
                                  sha256 ? sha256 : "");
    if ((err = imgstore_store__tip_tree(&tip, store)) < 0 ||
        (err = imgstore_store__digest_rows(&found, &found_count, store, tip, sha256)) < 0)
        goto done;
    if (!(rows = calloc(found_count + 1, sizeof(*rows)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < found_count && err == 0; i++) {
        char name[IMGSTORE_NAME_MAX + 1], version[IMGSTORE_NAME_MAX + 1],
            file[IMGSTORE_NAME_MAX + 1], path[512];
        git_oid id;
        bool dup = false;
        int end = 0;

        if (sscanf(found[i] + 65, "%128[^\t]\t%128[^\t]\t%128[^\t]%n", name, version, file, &end) !=
                3 ||
            found[i][65 + end] != '\0') {
            err = imgstore_error_set(IMGSTORE_EVERIFY, "index/digests: the index is damaged (a "
                                                       "row does not parse); run imgstore "
                                                       "reindex");
            break;
        }
        if (file[0] == '@')
            continue; /* the OCI config or manifest of the version, not a file of it */
        /* a version pruned and pushed again under its name has two rows: one answer */
        for (size_t k = 0; k < n && !dup; k++)
            dup = !strcmp(rows[k].name, name) && !strcmp(rows[k].version, version) &&
                  !strcmp(rows[k].path, file);
        if (dup)
            continue;
        rows[n].name = strdup(name);
        rows[n].version = strdup(version);
        rows[n].path = strdup(file);
        if (!rows[n].name || !rows[n].version || !rows[n].path)
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        imgstore_store__version_path(path, sizeof(path), store, name, version, NULL);
        id = imgstore_store__id_at(tip, path);
        rows[n++].stored = !git_oid_iszero(&id);
    }
    if (err < 0)
        goto done;
    qsort(rows, n, sizeof(*rows), where_cmp);
    for (size_t first = 0, end; first < n && err == 0; first = end) {
        for (end = first + 1; end < n && strcmp(rows[end].name, rows[first].name) == 0; end++)
            ;
        err = channels_of(rows, first, end, store, tip, rows[first].name, history);
    }
    if (err < 0)
        goto done;
    *out = rows;
    *count_out = n;
    rows = NULL;
done:
    imgstore_where_free(rows, n);
    imgstore_strings_free(found, found_count);
    git_tree_free(tip);
    return err;
}

static json_t *strings_json(char **list, size_t count)
{
    json_t *array = json_array();

    for (size_t i = 0; array && i < count; i++)
        json_array_append_new(array, json_string(list[i]));
    return array;
}

json_t *imgstore_store_where_to_json(const imgstore_where *rows, size_t count)
{
    json_t *array = json_array();

    for (size_t i = 0; array && i < count; i++) {
        json_t *row =
            json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o}", "name", rows[i].name, "version",
                      rows[i].version, "file", rows[i].path, "stored", rows[i].stored, "running",
                      strings_json(rows[i].running, rows[i].running_count), "stack",
                      strings_json(rows[i].stacked, rows[i].stacked_count), "ran",
                      strings_json(rows[i].ran, rows[i].ran_count));

        if (!row || json_array_append_new(array, row) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

int imgstore_store__oci_digests(char config_hex[65], char manifest_hex[65],
                                const imgstore_manifest *m)
{
    char *canonical = NULL, *config = NULL, *manifest = NULL, canonical_hex[65];
    size_t canonical_len = 0, config_len = 0, manifest_len = 0;
    int err;

    /* as the server renders a trusted version (server/route_oci.c): the stored manifest is
     * its canonical encoding, so its digest is the one the signatures cover */
    if ((err = imgstore_schema_manifest_encode(&canonical, &canonical_len, m)) < 0 ||
        (err = imgstore_sha256_hex(canonical_hex, canonical, canonical_len)) < 0 ||
        (err = imgstore_schema_oci_config(&config, &config_len, canonical, canonical_len,
                                          canonical_hex)) < 0 ||
        (err = imgstore_sha256_hex(config_hex, config, config_len)) < 0 ||
        (err = imgstore_schema_oci_manifest(&manifest, &manifest_len, m, canonical_hex, config_hex,
                                            config_len)) < 0)
        goto done;
    err = imgstore_sha256_hex(manifest_hex, manifest, manifest_len);
done:
    free(manifest);
    free(config);
    free(canonical);
    return err;
}

int imgstore_store_digest_versions(char ***out, size_t *count_out, imgstore_store *store,
                                   const char *name, const char *sha256, size_t limit)
{
    git_tree *tip = NULL;
    git_oid digests;
    char log[64], key[64 + IMGSTORE_NAME_MAX + 3], **rows = NULL, **found = NULL;
    size_t total = 0, lo = 0, hi, key_len, n = 0;
    int err;

    *out = NULL;
    *count_out = 0;
    if (!sha256 || strlen(sha256) != 64 || strspn(sha256, "0123456789abcdef") != 64)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "'%.80s' is not a SHA-256 (64 lower-case hex digits)",
                                  sha256 ? sha256 : "");
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0)
        return err;
    if (!(found = calloc(limit + 1, sizeof(*found))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    key_len = (size_t)snprintf(key, sizeof(key), "%s\t%s\t", sha256, name);
    snprintf(log, sizeof(log), "index/digests/%.2s/%.2s", sha256, sha256 + 2);
    if ((err = imgstore_store__tip_tree(&tip, store)) < 0)
        goto done;
    digests = imgstore_store__id_at(tip, "index/digests");
    if (git_oid_iszero(&digests)) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                 "the store has no digest index (an older imgstore wrote it); "
                                 "run imgstore reindex");
        goto done;
    }
    if ((err = imgstore_store__log_count(&total, store, tip, log)) < 0)
        goto done;
    /* the log is sorted: the first row at or after "sha256 TAB name TAB", one segment a probe */
    for (hi = total; lo < hi && err == 0;) {
        size_t mid = lo + (hi - lo) / 2;

        if ((err = imgstore_store__log_rows(&rows, store, tip, log, total, mid, 1)) < 0)
            break;
        if (strcmp(rows[0], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
        imgstore_strings_free(rows, 1);
        rows = NULL;
    }
    for (size_t at = lo; err == 0 && at < total && at - lo < DIGEST_SCAN_ROWS && n < limit;) {
        size_t take = IMGSTORE_STORE__LOG_ROWS - at % IMGSTORE_STORE__LOG_ROWS, i;

        take = take < total - at ? take : total - at;
        if ((err = imgstore_store__log_rows(&rows, store, tip, log, total, at, take)) < 0)
            break;
        for (i = 0; i < take && n < limit; i++) {
            char version[IMGSTORE_NAME_MAX + 1], path[512];
            const char *tab;
            git_oid id;

            if (strncmp(rows[i], key, key_len) != 0)
                break;
            if (!(tab = strchr(rows[i] + key_len, '\t')) ||
                (size_t)(tab - rows[i] - key_len) > IMGSTORE_NAME_MAX)
                continue;
            snprintf(version, sizeof(version), "%.*s", (int)(tab - rows[i] - key_len),
                     rows[i] + key_len);
            imgstore_store__version_path(path, sizeof(path), store, name, version, NULL);
            id = imgstore_store__id_at(tip, path);
            if (git_oid_iszero(&id) || (n > 0 && strcmp(found[n - 1], version) == 0))
                continue; /* pruned, or a second file of the same version */
            if (!(found[n++] = strdup(version)))
                err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        }
        imgstore_strings_free(rows, take);
        rows = NULL;
        if (i < take && n < limit)
            break; /* past the rows of this digest and image */
        at += take;
    }
done:
    git_tree_free(tip);
    if (err < 0) {
        imgstore_strings_free(found, n);
        return err;
    }
    *out = found;
    *count_out = n;
    return 0;
}
