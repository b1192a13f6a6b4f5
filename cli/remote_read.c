/*
 * Read-only commands over HTTP: ls (as the server lists), show (the manifest, with its
 * release signatures counted here, not as the server claims) and verify (everything a client
 * can check of a remote store: the policy chain, each version's release signatures, each
 * channel's signed state; the file bytes too with --deep, streamed and hashed, never stored).
 */
#include "cli/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *str(json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));

    return value ? value : "";
}

/* ---- ls ------------------------------------------------------------------------------- */

static void print_images(json_t *body)
{
    size_t i;
    json_t *image;

    printf("%-32s %8s  %-24s %s\n", "IMAGE", "VERSIONS", "NEWEST", "CHANNELS");
    json_array_foreach(json_object_get(body, "images"), i, image)
    {
        const char *key;
        json_t *value;

        /* shown as the server sent it, so escaped: a server is not trusted with the terminal */
        printf("%-32s %8lld  %-24s", cli_safe(str(image, "name")),
               (long long)json_integer_value(json_object_get(image, "versions")),
               cli_safe(str(image, "newest")));
        json_object_foreach(json_object_get(image, "channels"), key, value)
        {
            printf(" %s=%s", cli_safe(key), cli_safe(json_string_value(value)));
        }
        printf("\n");
    }
}

static void print_versions(json_t *body)
{
    json_t *channels = json_object_get(body, "channels"), *row;
    size_t i;

    printf("%-24s %-20s %5s %10s  %s\n", "VERSION", "CREATED", "FILES", "SIZE", "CHANNELS");
    json_array_foreach(json_object_get(body, "versions"), i, row)
    {
        char size[32], running[1024] = "";
        const char *key;
        json_t *value;

        json_object_foreach(channels, key, value)
        {
            if (json_string_value(value) &&
                strcmp(json_string_value(value), str(row, "version")) == 0)
                snprintf(running + strlen(running), sizeof(running) - strlen(running), "%s%s",
                         *running ? "," : "", key);
        }
        printf("%-24s %-20s %5lld %10s  %s\n", cli_safe(str(row, "version")),
               cli_safe(str(row, "created")),
               (long long)json_integer_value(json_object_get(row, "files")),
               cli_human_size(size, sizeof(size),
                              (uint64_t)json_integer_value(json_object_get(row, "size"))),
               cli_safe(running));
    }
}

/* `version` as a query value: '+' is the one character of a version name a form decoder
 * reads otherwise (as a space). */
static char *query_version(const char *version)
{
    char escaped[3 * IMGSTORE_NAME_MAX + 1], *at = escaped;

    for (; *version && at < escaped + sizeof(escaped) - 4; version++)
        at += *version == '+' ? (size_t)sprintf(at, "%%2B") : (size_t)sprintf(at, "%c", *version);
    return strdup(escaped);
}

/* ls NAME against a server: pages of GET /v1/images/{name} until `limit` rows (SIZE_MAX: a
 * page on a terminal, all otherwise; 0: all); with --sort name, ?sort=name and the cursor a
 * version. */
static int remote_ls_versions(cli_ctx *ctx, imgstore_client *client, const char *name,
                              const cli_ls_page *page)
{
    json_t *all = NULL, *body = NULL, *next = NULL;
    size_t printed = 0, limit = page->limit, before = page->before;
    char *after = page->after ? query_version(page->after) : NULL;
    bool follow = limit == 0 || (limit == SIZE_MAX && (ctx->json || !isatty(STDOUT_FILENO)));
    int err = 0;

    if (page->after && !after)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (limit == SIZE_MAX)
        limit = follow ? 0 : 20;
    for (;;) {
        size_t want = limit ? limit - printed : 1000, n = want > 1000 ? 1000 : want;
        char *path = page->by_name ? imgstore_strfmt("/v1/images/%s?sort=name&limit=%zu%s%s", name,
                                                     n, after ? "&before=" : "", after ? after : "")
                     : before != SIZE_MAX
                         ? imgstore_strfmt("/v1/images/%s?limit=%zu&before=%zu", name, n, before)
                         : imgstore_strfmt("/v1/images/%s?limit=%zu", name, n);

        if (!path) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            break;
        }
        json_decref(body);
        body = NULL;
        err = imgstore_client_get_json(&body, client, path);
        free(path);
        if (err < 0)
            break;
        if (!all)
            all = json_incref(body);
        else
            json_array_extend(json_object_get(all, "versions"), json_object_get(body, "versions"));
        printed += json_array_size(json_object_get(body, "versions"));
        next = json_object_get(body, "next");
        if (!(page->by_name ? json_is_string(next) : json_is_integer(next)) ||
            json_array_size(json_object_get(body, "versions")) == 0 || (limit && printed >= limit))
            break;
        if (page->by_name) {
            /* the server's cursor goes back into a URL: only as a version name */
            free(after);
            after = NULL;
            if ((err = imgstore_client_check_names(NULL, json_string_value(next), NULL)) < 0 ||
                !(after = query_version(json_string_value(next)))) {
                err = err < 0 ? err : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                break;
            }
        } else {
            before = (size_t)json_integer_value(next);
        }
    }
    if (err == 0) {
        json_object_set(all, "next", next ? next : json_null());
        if (ctx->json) {
            err = cli_print_json(json_incref(all));
        } else {
            print_versions(all);
            if (json_is_integer(next)) {
                fflush(stdout);
                fprintf(stderr, "(%lld older; the next page: imgstore ls %s --before %lld)\n",
                        (long long)json_integer_value(next), name,
                        (long long)json_integer_value(next));
            } else if (json_is_string(next)) {
                fflush(stdout);
                fprintf(stderr, "(more; the next page: imgstore ls %s --sort name --before %s)\n",
                        name, cli_safe(json_string_value(next)));
            }
        }
    }
    free(after);
    json_decref(body);
    json_decref(all);
    return err;
}

int cli_remote_cmd_ls(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    cli_read_args args;
    cli_ls_page page;
    json_t *body = NULL;
    char *path = NULL;
    int code, err;
    int first = cli_ls_parse(ctx, argc, argv, &args, &page, &code);

    if (first < 0)
        return code;
    if (argc - first > 1)
        return cli_usage_error(ctx, "expected at most one NAME");
    if ((err = imgstore_client_check_names(first < argc ? argv[first] : NULL, NULL, NULL)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0)
        goto done;
    /* the server sends a page (100 rows unless told); --limit asks for one size, --all and
     * --json follow its "next" to the end */
    if (first >= argc) {
        if (!(path = strdup("/v1/images"))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        if ((err = imgstore_client_get_json(&body, client, path)) < 0)
            goto done;
        err = ctx->json ? cli_print_json(json_incref(body)) : (print_images(body), 0);
        goto done;
    }
    err = remote_ls_versions(ctx, client, argv[first], &page);
done:
    json_decref(body);
    free(path);
    imgstore_client_free(client);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

/* ---- show ----------------------------------------------------------------------------- */

int cli_remote_cmd_show(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    imgstore_client_manifest m = {0};
    cli_read_args args;
    char *name = NULL, *version = NULL;
    int code, err;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0)
        return code;
    if ((code = cli_version_arg(ctx, argc, argv, first, &name, &version)) >= 0)
        return code;
    /* show is for looking: an untrusted version is shown, and says so */
    if ((err = cli_client_open(&client, &args.remote)) < 0 ||
        (err = imgstore_client_policy_load(client)) < 0 ||
        (err = imgstore_client_manifest_fetch(&m, client, name, version, false)) < 0)
        goto done;
    err = cli_print_version(ctx, m.manifest, m.sha256, &m.status);
done:
    imgstore_client_manifest_clear(&m);
    imgstore_client_free(client);
    free(name);
    free(version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

/* diff is for looking too: versions are compared whatever their signatures say, but each
 * manifest is still checked to be the exact bytes of the version asked for. */
int cli_remote_cmd_diff(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    imgstore_client_manifest a = {0}, b = {0};
    cli_read_args args;
    char *name_a = NULL, *ver_a = NULL, *name_b = NULL, *ver_b = NULL;
    int code = -1, err = 0;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0)
        return code;
    if (argc - first != 2)
        return cli_usage_error(ctx, "expected NAME@V1 NAME@V2");
    if ((err = cli_split_ref(&name_a, &ver_a, argv[first])) < 0 ||
        (err = cli_split_ref(&name_b, &ver_b, argv[first + 1])) < 0)
        goto done;
    if (!ver_a || !ver_b) {
        code = cli_usage_error(ctx, "both arguments must be NAME@VERSION");
        goto done;
    }
    if ((err = cli_client_open(&client, &args.remote)) < 0 ||
        (err = imgstore_client_policy_load(client)) < 0 ||
        (err = imgstore_client_manifest_fetch(&a, client, name_a, ver_a, false)) < 0 ||
        (err = imgstore_client_manifest_fetch(&b, client, name_b, ver_b, false)) < 0)
        goto done;
    err = cli_print_diff(ctx, a.manifest, b.manifest);
done:
    if (code < 0)
        code = err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
    imgstore_client_manifest_clear(&a);
    imgstore_client_manifest_clear(&b);
    imgstore_client_free(client);
    free(name_a);
    free(ver_a);
    free(name_b);
    free(ver_b);
    return code;
}

/* ---- verify --------------------------------------------------------------------------- */

typedef struct {
    const cli_ctx *ctx;
    json_t *versions, *channels, *policies;
    bool failed;
} report;

static void row(report *r, const char *kind, const char *name, const char *version, int status,
                size_t valid, uint32_t threshold, uint64_t bytes, bool deep)
{
    const char *word = status ? "failed" : valid < threshold ? "pending" : "ok";
    char what[300], size[32] = "";

    r->failed |= status != 0;
    if (strcmp(kind, "channel") == 0)
        snprintf(what, sizeof(what), "channel %s/%s", name, version);
    else if (strcmp(kind, "policy") == 0)
        snprintf(what, sizeof(what), "policy %s", version);
    else
        snprintf(what, sizeof(what), "%s%s%s", name, *version ? "@" : "", version);
    if (r->ctx->json) {
        json_t *out =
            json_pack("{s:s, s:s, s:s}", "name", name, "version", version, "status", word);

        if (strcmp(kind, "version") == 0 && deep)
            json_object_set_new(out, "bytes", json_integer((json_int_t)bytes));
        if (threshold) {
            json_object_set_new(out, "signatures", json_integer((json_int_t)valid));
            json_object_set_new(out, "threshold", json_integer((json_int_t)threshold));
        }
        if (status)
            json_object_set_new(out, "message", json_string(imgstore_error_last()));
        json_array_append_new(strcmp(kind, "channel") == 0  ? r->channels
                              : strcmp(kind, "policy") == 0 ? r->policies
                                                            : r->versions,
                              out);
    } else if (status) {
        printf("FAILED  %s  %s\n", what, cli_safe(imgstore_error_last()));
    } else {
        if (deep && strcmp(kind, "version") == 0)
            cli_human_size(size, sizeof(size), bytes);
        printf("%-8s%s  %s%ssignatures %zu/%u\n", word, what, size, *size ? "  " : "", valid,
               threshold);
    }
}

typedef struct {
    imgstore_sha256 *sha;
    uint64_t bytes, expect;
} hash_sink;

static int hash_write(bool restarted, const void *buf, size_t len, void *payload)
{
    hash_sink *sink = payload;

    (void)restarted; /* asked from byte 0: nothing to restart */
    if (len > sink->expect - sink->bytes)
        return imgstore_error_set(IMGSTORE_EVERIFY, "the server sent more bytes than the manifest "
                                                    "says");
    imgstore_sha256_update(sink->sha, buf, len);
    sink->bytes += len;
    return 0;
}

/* --deep: every file's bytes, hashed as they stream past. */
static int check_bytes(imgstore_client *client, const imgstore_manifest *m, uint64_t *bytes_out)
{
    int err = 0;

    *bytes_out = 0;
    for (size_t i = 0; i < m->file_count && err == 0; i++) {
        const imgstore_manifest_file *f = &m->files[i];
        hash_sink sink = {NULL, 0, f->size};
        char digest[65];

        if ((err = imgstore_sha256_new(&sink.sha)) == 0 &&
            (err = imgstore_client_file_read_once(client, m->name, m->version, f->path, 0,
                                                  hash_write, &sink)) == 0) {
            imgstore_sha256_final_hex(sink.sha, digest);
            if (sink.bytes != f->size || strcmp(digest, f->sha256) != 0)
                err =
                    imgstore_error_set(IMGSTORE_EVERIFY, "%s does not match the manifest", f->path);
        }
        *bytes_out += sink.bytes;
        imgstore_sha256_free(sink.sha);
    }
    return err;
}

static int verify_version(report *r, imgstore_client *client, const char *name, const char *version,
                          bool deep)
{
    imgstore_client_manifest m = {0};
    uint64_t bytes = 0;
    int err = imgstore_client_manifest_fetch(&m, client, name, version, false);

    if (err == 0 && m.status.invalid)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%zu damaged release signature(s): %s",
                                 m.status.invalid, imgstore_error_last());
    if (err == 0 && deep)
        err = check_bytes(client, m.manifest, &bytes);
    row(r, "version", name, version, err == IMGSTORE_EVERIFY || err == IMGSTORE_EINVALID ? err : 0,
        m.status.valid, m.status.threshold, bytes, deep);
    imgstore_client_manifest_clear(&m);
    return err == IMGSTORE_EVERIFY || err == IMGSTORE_EINVALID ? 0 : err;
}

static int verify_channel(report *r, imgstore_client *client, const char *name, const char *channel)
{
    imgstore_channel_state *state = NULL;
    imgstore_trust_status status = {0};
    imgstore_client_manifest m = {0};
    int err = imgstore_client_channel_get(&state, &status, client, name, channel, false);

    if (err == 0 &&
        (err = imgstore_client_manifest_fetch(&m, client, name, state->version, true)) == 0 &&
        strcmp(m.sha256, state->manifest_sha256) != 0)
        err =
            imgstore_error_set(IMGSTORE_EVERIFY, "pins manifest %.16s..., the server has %.16s...",
                               state->manifest_sha256, m.sha256);
    /* the deploy signatures, as local verify shows them */
    row(r, "channel", name, channel, err == IMGSTORE_EVERIFY || err == IMGSTORE_ENOTFOUND ? err : 0,
        status.valid, status.threshold, 0, false);
    imgstore_client_manifest_clear(&m);
    imgstore_channel_state_free(state);
    return err == IMGSTORE_EVERIFY || err == IMGSTORE_ENOTFOUND ? 0 : err;
}

static int verify_image(report *r, imgstore_client *client, const char *name,
                        const char *only_version, bool deep)
{
    json_t *body = NULL, *item;
    char *path = imgstore_strfmt("/v1/images/%s", name);
    const char *key;
    size_t i;
    int err;

    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (only_version) {
        err = verify_version(r, client, name, only_version, deep);
        free(path);
        return err;
    }
    if ((err = imgstore_client_check_names(name, NULL, NULL)) < 0)
        goto done;
    /* every version, a page at a time (the server pages GET /v1/images/{name}) */
    for (char *page = strdup(path); page && err == 0;) {
        json_t *next;

        json_decref(body);
        body = NULL;
        err = imgstore_client_get_json(&body, client, page);
        free(page);
        page = NULL;
        /* the server answers verification_failed for an image whose channel state or
         * manifest it cannot read, rather than leaving it out: a failure of this image, not
         * the end */
        if (err == IMGSTORE_EVERIFY) {
            row(r, "version", name, "", err, 0, 0, 0, false);
            err = 0;
            goto done;
        }
        json_array_foreach(json_object_get(body, "versions"), i, item)
        {
            if (err == 0)
                err = verify_version(r, client, name, str(item, "version"), deep);
        }
        next = json_object_get(body, "next");
        if (err == 0 && json_is_integer(next) &&
            json_array_size(json_object_get(body, "versions")) > 0 &&
            !(page = imgstore_strfmt("%s?limit=1000&before=%lld", path,
                                     (long long)json_integer_value(next))))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    if (err < 0)
        goto done;
    json_object_foreach(json_object_get(body, "channels"), key, item)
    {
        if (err == 0)
            err = verify_channel(r, client, name, key);
    }
done:
    json_decref(body);
    free(path);
    return err;
}

int cli_remote_cmd_verify(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    report r = {ctx, json_array(), json_array(), json_array(), false};
    cli_read_args args;
    json_t *images = NULL, *item;
    char *name = NULL, *version = NULL, number[32];
    size_t i;
    int code, err;
    int first = cli_read_parse(ctx, argc, argv, &args, true, &code);

    if (first < 0)
        goto out;
    if (argc - first > 1) {
        code = cli_usage_error(ctx, "expected at most one NAME[@VERSION]");
        goto out;
    }
    if (first < argc && (err = cli_split_ref(&name, &version, argv[first])) < 0)
        goto done;
    if ((err = imgstore_client_check_names(name, version, NULL)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0)
        goto done;
    /* the chain is the root of every other check: if it fails, nothing else can be judged */
    err = imgstore_client_policy_load(client);
    for (uint64_t p = 1; err == 0 && p <= imgstore_client_policy_count(client); p++) {
        const imgstore_policy_role *root =
            &imgstore_client_policy(client)->roles[IMGSTORE_ROLE_ROOT];

        snprintf(number, sizeof(number), "%llu", (unsigned long long)p);
        row(&r, "policy", "trust", number, 0, root->threshold, root->threshold, 0, false);
    }
    if (err == IMGSTORE_EVERIFY) {
        row(&r, "policy", "trust", "chain", err, 0, 0, 0, false);
        goto done;
    }
    if (err < 0)
        goto done;
    if (name) {
        err = verify_image(&r, client, name, version, args.deep);
    } else if ((err = imgstore_client_get_json(&images, client, "/v1/images")) == 0) {
        json_array_foreach(json_object_get(images, "images"), i, item)
        {
            if (err == 0)
                err = verify_image(&r, client, str(item, "name"), NULL, args.deep);
        }
    }
done:
    if (err == 0 && r.failed)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "verification failed");
    if (ctx->json) {
        json_t *out = json_pack("{s:b, s:O, s:O, s:O}", "ok", err == 0, "versions", r.versions,
                                "channels", r.channels, "policies", r.policies);

        if (err < 0 && err != IMGSTORE_EVERIFY)
            json_object_set_new(out, "error", json_string(imgstore_error_last()));
        cli_print_json(out);
    }
    code = err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
out:
    json_decref(images);
    json_decref(r.versions);
    json_decref(r.channels);
    json_decref(r.policies);
    imgstore_client_free(client);
    free(name);
    free(version);
    return code;
}

/* trust show --server URL: the policy at the end of the chain this client verified (and
 * pinned), not whatever the server says is current. Policy changes are made on the store
 * itself, with root keys (imgstore trust ... --repo), never through a server. */
int cli_remote_cmd_trust(cli_ctx *ctx, int argc, char **argv)
{
    cli_read_args args;
    imgstore_client *client = NULL;
    char *bytes = NULL, digest[65];
    size_t len = 0;
    int code, err = 0;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0)
        return code;
    if (first != argc - 1 || strcmp(argv[first], "show") != 0)
        return cli_usage_error(ctx, "only 'trust show' works against a server; change the "
                                    "policy on the store with --repo and root keys");
    if ((err = cli_client_open(&client, &args.remote)) < 0 ||
        (err = imgstore_client_policy_load(client)) < 0 ||
        (err = imgstore_schema_policy_encode(&bytes, &len, imgstore_client_policy(client))) < 0 ||
        (err = imgstore_sha256_hex(digest, bytes, len)) < 0)
        goto done;
    err = cli_print_policy(ctx, imgstore_client_policy(client), digest);
done:
    free(bytes);
    imgstore_client_free(client);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
