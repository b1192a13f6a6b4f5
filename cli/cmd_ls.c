/*
 * Read-only views of the store: ls (images; versions and channels of one), show (one
 * manifest) and diff (two versions of an image).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The version each channel of `name` runs, read once per ls: {"prod": "1.2", ...}. Reading
 * it per listed version made ls cost versions x channels state reads (issue #9). */
static json_t *channel_versions(imgstore_store *store, const char *name)
{
    json_t *channels_json = json_object();
    char **channels = NULL;
    size_t count = 0;

    if (!channels_json || imgstore_store_list_channels(&channels, &count, store, name) < 0)
        return channels_json;
    for (size_t i = 0; i < count; i++) {
        imgstore_channel_state *state = NULL;

        if (imgstore_store_channel_get(&state, store, name, channels[i]) == 0)
            json_object_set_new(channels_json, channels[i], json_string(state->version));
        imgstore_channel_state_free(state);
    }
    imgstore_strings_free(channels, count);
    return channels_json;
}

/* "prod,staging": the channels in `channels_json` that run `version` (caller frees). */
static char *channels_running(const json_t *channels_json, const char *version)
{
    char *list = strdup("");
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)channels_json, key, value)
    {
        if (list && strcmp(json_string_value(value), version) == 0) {
            char *grown = imgstore_strfmt("%s%s%s", list, *list ? "," : "", key);

            free(list);
            list = grown;
        }
    }
    return list;
}

static int ls_images(cli_ctx *ctx, imgstore_store *store)
{
    char **names = NULL;
    size_t count = 0;
    json_t *images = json_array();
    int err;

    if ((err = imgstore_store_list_images(&names, &count, store)) < 0)
        goto done;
    if (!ctx->json)
        printf("%-32s %8s  %-24s %s\n", "IMAGE", "VERSIONS", "NEWEST", "CHANNELS");
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_version_row *newest = NULL;
        size_t version_count = 0, rows = 0;
        json_t *channels;

        /* one index row per image: the count and the newest (issue #9) */
        if ((err = imgstore_store_versions_page(&newest, &rows, &version_count, store, names[i],
                                                SIZE_MAX, 1)) < 0)
            break;
        channels = channel_versions(store, names[i]);
        if (ctx->json) {
            json_array_append_new(images, json_pack("{s:s, s:I, s:s, s:o}", "name", names[i],
                                                    "versions", (json_int_t)version_count, "newest",
                                                    newest[0].version, "channels", channels));
        } else {
            const char *key;
            json_t *value;

            printf("%-32s %8zu  %-24s", names[i], version_count, newest[0].version);
            json_object_foreach(channels, key, value)
            {
                printf(" %s=%s", key, json_string_value(value));
            }
            printf("\n");
            json_decref(channels);
        }
        imgstore_version_rows_free(newest, rows);
    }
    if (err == 0 && ctx->json) {
        err = cli_print_json(json_pack("{s:O}", "images", images));
    }
done:
    json_decref(images);
    imgstore_strings_free(names, count);
    return err;
}

/* Rows per read of the index while streaming: memory stays bounded whatever the count. */
#define LS_BATCH 512

/* Where ls NAME stands in its listing: the cursor of the next read. */
typedef struct {
    size_t before; /* time order: the row the last read ended at */
    char *after;   /* --sort name: the version it ended at (NULL: from the first) */
    bool more;     /* more rows follow the last read */
} ls_cursor;

/* One read of up to `want` rows from `at`, in the page's order; moves `at` past them. */
static int ls_read(imgstore_version_row **rows_out, size_t *count_out, size_t *total_out,
                   imgstore_store *store, const char *name, const cli_ls_page *page, ls_cursor *at,
                   size_t want)
{
    int err;

    if (page->by_name) {
        /* the name index's pager, as the OCI tag list pages (docs/format.md, "Indexes") */
        if ((err = imgstore_store_versions_by_name(rows_out, count_out, total_out, &at->more, store,
                                                   name, at->after, want)) < 0 ||
            *count_out == 0)
            return err;
        free(at->after);
        if (!(at->after = strdup((*rows_out)[*count_out - 1].version)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        return 0;
    }
    if ((err = imgstore_store_versions_page(rows_out, count_out, total_out, store, name, at->before,
                                            want)) < 0)
        return err;
    if (*count_out)
        at->before = (*rows_out)[*count_out - 1].row;
    at->more = *count_out == want && at->before > 0;
    return 0;
}

static int ls_versions(cli_ctx *ctx, imgstore_store *store, const char *name,
                       const cli_ls_page *page)
{
    json_t *channels = NULL;
    size_t printed = 0, total = 0;
    ls_cursor at = {page->before, page->after ? strdup(page->after) : NULL, false};
    int err = 0;

    if (page->after && !at.after)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (;;) {
        imgstore_version_row *rows = NULL;
        size_t want = LS_BATCH, count = 0;

        if (page->limit && page->limit - printed < want)
            want = page->limit - printed;
        if ((err = ls_read(&rows, &count, &total, store, name, page, &at, want)) < 0) {
            imgstore_version_rows_free(rows, count);
            break;
        }
        if (!channels) { /* after the first read, which says whether the image exists */
            channels = channel_versions(store, name);
            if (ctx->json) {
                char *head = json_dumps(channels, JSON_SORT_KEYS);

                printf("{\"name\": \"%s\", \"total\": %zu, \"channels\": %s, \"versions\": [", name,
                       total, head ? head : "{}");
                free(head);
            } else {
                printf("%-24s %-20s %5s %10s  %s\n", "VERSION", "CREATED", "FILES", "SIZE",
                       "CHANNELS");
            }
        }
        for (size_t i = 0; i < count; i++, printed++) {
            const imgstore_version_row *r = &rows[i];
            char size[32], *running = channels_running(channels, r->version);

            if (ctx->json) { /* one row at a time: --json of a million versions streams */
                json_t *obj = imgstore_store_version_row_to_json(r);
                char *text = obj ? json_dumps(obj, JSON_SORT_KEYS) : NULL;

                json_decref(obj);
                if (!text) {
                    free(running);
                    err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                    break;
                }
                printf("%s\n    %s", printed ? "," : "", text);
                free(text);
            } else
                printf("%-24s %-20s %5zu %10s  %s\n", r->version, r->created, r->files,
                       cli_human_size(size, sizeof(size), r->size), running ? running : "");
            free(running);
        }
        imgstore_version_rows_free(rows, count);
        if (err < 0 || !at.more || (page->limit && printed >= page->limit))
            break;
    }
    if (err == 0 && ctx->json) {
        if (at.more && page->by_name) /* version names need no JSON escaping */
            printf("\n], \"next\": \"%s\"}\n", at.after);
        else if (at.more)
            printf("\n], \"next\": %zu}\n", at.before);
        else
            printf("\n], \"next\": null}\n");
    } else if (err == 0 && at.more) {
        fflush(stdout);
        if (page->by_name)
            fprintf(stderr, "(more; the next page: imgstore ls %s --sort name --before %s)\n", name,
                    at.after);
        else
            fprintf(stderr, "(%zu older; the next page: imgstore ls %s --before %zu)\n", at.before,
                    name, at.before);
    }
    json_decref(channels);
    free(at.after);
    return err;
}

/* Rows that fit the terminal, when stdout is one (the default --limit there). */
static size_t screenful(void)
{
    struct winsize ws;

    if (!isatty(STDOUT_FILENO))
        return 0;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 4)
        return ws.ws_row - 3u;
    return 20;
}

int cli_cmd_ls(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_ls(ctx, argc, argv);
    imgstore_store *store = NULL;
    cli_ls_page page;
    int code, err;
    cli_read_args args;
    int first = cli_ls_parse(ctx, argc, argv, &args, &page, &code);

    if (first < 0)
        return code;
    if (argc - first > 1)
        return cli_usage_error(ctx, "expected at most one NAME");
    if (page.limit == SIZE_MAX) /* not given */
        page.limit = ctx->json ? 0 : screenful();
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = first < argc ? ls_versions(ctx, store, argv[first], &page) : ls_images(ctx, store);
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

static void print_details(const imgstore_file_info *info)
{
    if (info->solo5_target[0]) {
        printf("      solo5 target %s, abi %u, devices:", info->solo5_target,
               info->solo5_abi_version);
        for (uint32_t d = 0; d < info->device_count; d++)
            printf(" %s (%s)", cli_safe(info->devices[d].name), cli_safe(info->devices[d].type));
        printf("%s\n", info->device_count ? "" : " none");
    }
    if (info->xen_mode[0])
        printf("      xen %s\n", info->xen_mode);
    if (info->kernel_version[0])
        printf("      linux %s, boot protocol %s\n", cli_safe(info->kernel_version),
               cli_safe(info->boot_protocol));
    if (info->volume_id[0] || info->hybrid)
        printf("      volume '%s'%s%s\n", cli_safe(info->volume_id), info->hybrid ? ", hybrid" : "",
               info->efi ? ", efi" : "");
    if (info->partition_table[0])
        printf("      partition table %s\n", info->partition_table);
    if (info->compression[0] && strcmp(info->compression, "none") != 0)
        printf("      compressed with %s\n", info->compression);
    if (strcmp(info->kind, "cmdline") == 0)
        printf("      \"%s\"\n", cli_safe(info->text));
}

int cli_print_version(const cli_ctx *ctx, const imgstore_manifest *m, const char *digest,
                      const imgstore_trust_status *trust)
{
    char size[32];

    if (ctx->json)
        return cli_print_json(json_pack("{s:o, s:s, s:{s:I, s:I, s:I, s:b}}", "manifest",
                                        imgstore_schema_manifest_to_json(m), "manifest_sha256",
                                        digest, "signatures", "valid", (json_int_t)trust->valid,
                                        "threshold", (json_int_t)trust->threshold, "invalid",
                                        (json_int_t)trust->invalid, "trusted", trust->trusted));
    printf("%s@%s\n  created   %s\n  builder   %s\n  manifest  sha256:%s\n  signed    %zu of %u "
           "release signatures%s%s\n",
           m->name, m->version, m->created, cli_safe(m->builder), digest, trust->valid,
           trust->threshold, trust->trusted ? "" : " (pending: not deployable)",
           trust->invalid ? " (a signature is damaged: run imgstore verify)" : "");
    if (m->source_repository || m->source_commit)
        printf("  source    %s@%s\n", cli_safe(m->source_repository), cli_safe(m->source_commit));
    for (size_t i = 0; i < m->label_count; i++)
        printf("  label     %s=%s\n", m->labels[i].key, cli_safe(m->labels[i].value));
    printf("  files:\n");
    for (size_t i = 0; i < m->file_count; i++) {
        const imgstore_manifest_file *f = &m->files[i];

        printf("    %-28s %-10s %-14s %10s  %zu chunks  sha256:%s\n", f->path, f->info.kind,
               f->info.format, cli_human_size(size, sizeof(size), f->size), f->chunk_count,
               f->sha256);
        print_details(&f->info);
    }
    if (m->boot.kernel)
        printf("  boot set  kernel=%s initrd=%s cmdline=%s (%s)\n", m->boot.kernel,
               m->boot.initrd ? m->boot.initrd : "-", m->boot.cmdline ? m->boot.cmdline : "-",
               m->boot.complete ? "complete" : "incomplete");
    return 0;
}

static int show_version(cli_ctx *ctx, imgstore_store *store, const char *name, const char *version)
{
    imgstore_manifest *m = NULL;
    imgstore_trust_status trust = {0};
    char digest[65];
    int err;

    /* show is for looking, so it shows an untrusted version too, and says so */
    if ((err = imgstore_store_manifest_get(&m, digest, store, name, version)) == 0 &&
        (err = imgstore_store_version_trust(&trust, store, name, version)) == 0)
        err = cli_print_version(ctx, m, digest, &trust);
    imgstore_manifest_free(m);
    return err;
}

int cli_cmd_show(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_show(ctx, argc, argv);
    imgstore_store *store = NULL;
    char *name = NULL, *version = NULL;
    int code, err;
    cli_read_args args;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0)
        return code;
    if ((code = cli_version_arg(ctx, argc, argv, first, &name, &version)) >= 0)
        return code;
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = show_version(ctx, store, name, version);
    imgstore_store_free(store);
    free(name);
    free(version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

static bool has_chunk(const imgstore_manifest *m, const char *sha256)
{
    for (size_t i = 0; i < m->file_count; i++) {
        for (size_t c = 0; c < m->files[i].chunk_count; c++) {
            if (strcmp(m->files[i].chunks[c].sha256, sha256) == 0)
                return true;
        }
    }
    return false;
}

static const imgstore_manifest_file *file_named(const imgstore_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->file_count; i++) {
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    }
    return NULL;
}

/* One row of the diff for `path`, which is in `a`, `b` or both. */
static json_t *diff_file(const imgstore_manifest *a, const imgstore_manifest *b, const char *path)
{
    const imgstore_manifest_file *fa = file_named(a, path), *fb = file_named(b, path);
    uint64_t shared_bytes = 0;
    size_t shared = 0;
    const char *status;
    json_t *row;

    if (fb) {
        for (size_t c = 0; c < fb->chunk_count; c++) {
            if (has_chunk(a, fb->chunks[c].sha256)) {
                shared++;
                shared_bytes += fb->chunks[c].size;
            }
        }
    }
    status = !fa ? "added" : !fb ? "removed" : strcmp(fa->sha256, fb->sha256) ? "changed" : "same";
    row = json_pack("{s:s, s:s}", "path", path, "status", status);
    if (fa)
        json_object_set_new(row, "from_size", json_integer((json_int_t)fa->size));
    if (fb) {
        json_object_set_new(row, "to_size", json_integer((json_int_t)fb->size));
        json_object_set_new(row, "chunks", json_integer((json_int_t)fb->chunk_count));
        json_object_set_new(row, "shared_chunks", json_integer((json_int_t)shared));
        json_object_set_new(row, "shared_bytes", json_integer((json_int_t)shared_bytes));
    }
    return row;
}

static json_t *provenance_json(const imgstore_manifest *m)
{
    json_t *p = imgstore_schema_manifest_to_json(m);
    json_t *prov = json_incref(json_object_get(p, "provenance"));

    json_object_set_new(prov ? prov : (prov = json_object()), "created", json_string(m->created));
    json_decref(p);
    return prov;
}

int cli_print_diff(const cli_ctx *ctx, const imgstore_manifest *a, const imgstore_manifest *b)
{
    json_t *rows = json_array();

    for (size_t i = 0; i < a->file_count; i++)
        json_array_append_new(rows, diff_file(a, b, a->files[i].path));
    for (size_t i = 0; i < b->file_count; i++) {
        if (!file_named(a, b->files[i].path))
            json_array_append_new(rows, diff_file(a, b, b->files[i].path));
    }
    bool one_image = strcmp(a->name, b->name) == 0;

    if (ctx->json) {
        json_t *body = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "name", a->name, "from",
                                 a->version, "to", b->version, "files", rows, "from_provenance",
                                 provenance_json(a), "to_provenance", provenance_json(b));

        /* two images (#10): "name" is the first one's, "to_name" says the second's */
        if (body && !one_image)
            json_object_set_new(body, "to_name", json_string(b->name));
        return cli_print_json(body);
    }
    if (one_image)
        printf("%s %s -> %s\n", a->name, a->version, b->version);
    else
        printf("%s@%s -> %s@%s\n", a->name, a->version, b->name, b->version);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        char from[32] = "-", to[32] = "-";

        if (json_object_get(row, "from_size"))
            cli_human_size(from, sizeof(from),
                           (uint64_t)json_integer_value(json_object_get(row, "from_size")));
        if (json_object_get(row, "to_size"))
            cli_human_size(to, sizeof(to),
                           (uint64_t)json_integer_value(json_object_get(row, "to_size")));
        printf("  %-8s %-28s %10s -> %-10s", json_string_value(json_object_get(row, "status")),
               json_string_value(json_object_get(row, "path")), from, to);
        if (json_object_get(row, "chunks"))
            printf("  %lld/%lld chunks shared",
                   (long long)json_integer_value(json_object_get(row, "shared_chunks")),
                   (long long)json_integer_value(json_object_get(row, "chunks")));
        printf("\n");
    }
    printf("  created  %s -> %s\n", a->created, b->created);
    if (a->source_commit || b->source_commit)
        printf("  source   %s -> %s\n", a->source_commit ? cli_safe(a->source_commit) : "-",
               b->source_commit ? cli_safe(b->source_commit) : "-");
    printf("  builder  %s -> %s\n", a->builder ? cli_safe(a->builder) : "-",
           b->builder ? cli_safe(b->builder) : "-");
    json_decref(rows);
    return 0;
}

int cli_cmd_diff(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    imgstore_manifest *a = NULL, *b = NULL;
    char *name_a = NULL, *ver_a = NULL, *name_b = NULL, *ver_b = NULL;
    int code, err = 0, first;

    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_diff(ctx, argc, argv);
    cli_read_args args;

    if ((first = cli_read_parse(ctx, argc, argv, &args, false, &code)) < 0)
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
    if ((err = cli_open_store(&store, ctx, false)) < 0 ||
        (err = imgstore_store_manifest_get(&a, NULL, store, name_a, ver_a)) < 0 ||
        (err = imgstore_store_manifest_get(&b, NULL, store, name_b, ver_b)) < 0)
        goto done;
    err = cli_print_diff(ctx, a, b);
done:
    if (code < 0)
        code = err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
    imgstore_manifest_free(a);
    imgstore_manifest_free(b);
    imgstore_store_free(store);
    free(name_a);
    free(ver_a);
    free(name_b);
    free(ver_b);
    return code;
}
