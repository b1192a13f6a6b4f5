/*
 * What every subcommand shares: common options, the error-code to exit-code table, opening
 * the store, JSON output and the progress bar.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool cli_common_option(cli_ctx *ctx, int opt, const char *arg, int *exit_out)
{
    switch (opt) {
    case OPT_REPO:
        ctx->repo = arg;
        return true;
    case OPT_JSON:
        ctx->json = true;
        return true;
    case OPT_ACTOR:
        ctx->actor = arg;
        return true;
    case OPT_KEY:
        if (ctx->key_path_count == CLI_KEYS_MAX) {
            fprintf(stderr, "imgstore %s: at most %d --key options\n", ctx->command, CLI_KEYS_MAX);
            *exit_out = CLI_EXIT_USAGE;
        } else {
            ctx->key_paths[ctx->key_path_count++] = arg;
        }
        return true;
    case OPT_AGENT:
        ctx->agent = true;
        return true;
    case OPT_QUIET:
    case 'q':
        ctx->quiet = true;
        return true;
    case OPT_HELP:
        cli_usage(ctx, stdout);
        *exit_out = CLI_EXIT_OK;
        return true;
    default:
        return false;
    }
}

/* What getopt refused, as one line with this command's prefix (getopt's own message would
 * say "push: unrecognized option" and the usage would follow it). */
static int option_error(const cli_ctx *ctx, char **argv, const char *short_options)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "";

    if (optopt > 0 && optopt < 128)
        return strchr(short_options, optopt)
                   ? cli_usage_error(ctx, "option '-%c' needs a value", optopt)
                   : cli_usage_error(ctx, "unknown option '-%c'", optopt);
    if (optopt != 0 && strchr(arg, '='))
        return cli_usage_error(ctx, "option '%.*s' takes no value", (int)strcspn(arg, "="), arg);
    if (optopt != 0)
        return cli_usage_error(ctx, "option '%s' needs a value", arg);
    return cli_usage_error(ctx, "unknown option '%s'", arg);
}

int cli_next_option(cli_ctx *ctx, int argc, char **argv, const char *short_options,
                    const struct option *options, cli_remote_args *remote, int *code)
{
    char shorts[32];
    int opt;

    /* -q is --quiet for every command, as in git and curl */
    snprintf(shorts, sizeof(shorts), "q%s", short_options);
    short_options = shorts;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, short_options, options, NULL)) != -1) {
        if (opt == '?' || opt == ':') {
            *code = option_error(ctx, argv, short_options);
            return -1;
        }
        if (cli_common_option(ctx, opt, optarg, code)) {
            if (*code >= 0)
                return -1;
            continue;
        }
        if (remote && cli_remote_option(remote, opt, optarg))
            continue;
        return opt;
    }
    /* local mode: there is no server to send these to */
    if (remote && (remote->token || remote->pin) && !cli_remote_selected(argc, argv))
        *code = cli_usage_error(ctx, "%s is for a server: give --server URL",
                                remote->token ? "--token" : "--trust-policy-sha256");
    return -1;
}

int cli_parse_common(cli_ctx *ctx, int argc, char **argv, int *code)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};

    *code = -1;
    while (cli_next_option(ctx, argc, argv, "", options, NULL, code) != -1)
        ; /* no options of its own: getopt reports unknown ones as '?' */
    return *code >= 0 ? -1 : optind;
}

int cli_read_parse(cli_ctx *ctx, int argc, char **argv, cli_read_args *args, bool deep_ok,
                   int *code)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            CLI_REMOTE_OPTIONS,
                                            {"deep", no_argument, NULL, OPT_DEEP},
                                            {NULL, 0, NULL, 0}};
    int opt;

    *code = -1;
    memset(args, 0, sizeof(*args));
    while ((opt = cli_next_option(ctx, argc, argv, "", options, &args->remote, code)) != -1) {
        if (opt != OPT_DEEP)
            continue;
        if (!deep_ok) {
            *code = cli_usage_error(ctx, "--deep is for verify against a server");
            return -1;
        }
        args->deep = true;
    }
    return *code >= 0 ? -1 : optind;
}

int cli_ls_parse(cli_ctx *ctx, int argc, char **argv, cli_read_args *args, cli_ls_page *page,
                 int *code)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            CLI_REMOTE_OPTIONS,
                                            {"limit", required_argument, NULL, OPT_LIMIT},
                                            {"before", required_argument, NULL, OPT_BEFORE},
                                            {"all", no_argument, NULL, OPT_ALL},
                                            {"sort", required_argument, NULL, OPT_SORT},
                                            {NULL, 0, NULL, 0}};
    const char *before = NULL;
    uint64_t n = 0;
    int opt;

    *code = -1;
    memset(page, 0, sizeof(*page));
    page->limit = SIZE_MAX; /* not given */
    page->before = SIZE_MAX;
    memset(args, 0, sizeof(*args));
    while ((opt = cli_next_option(ctx, argc, argv, "", options, &args->remote, code)) != -1) {
        if (opt == OPT_ALL) {
            page->limit = 0;
        } else if (opt == OPT_BEFORE) {
            before = optarg; /* read once --sort is known, wherever it stands */
        } else if (opt == OPT_SORT) {
            if (strcmp(optarg, "time") != 0 && strcmp(optarg, "name") != 0) {
                *code = cli_usage_error(ctx, "--sort: expected time or name, got '%s'", optarg);
                return -1;
            }
            page->by_name = strcmp(optarg, "name") == 0;
        } else if (imgstore_parse_u64(&n, optarg) < 0 || n == 0) {
            *code = cli_usage_error(ctx, "--limit: expected a positive number, got '%s'", optarg);
            return -1;
        } else {
            page->limit = (size_t)n;
        }
    }
    if (*code >= 0)
        return -1;
    if (before && page->by_name) {
        /* a version name, so that it goes into a URL as it is (but '+') */
        if (imgstore_schema_check_name(IMGSTORE_NAME_VERSION, before) < 0) {
            *code = cli_usage_error(ctx, "--before: expected a version with --sort name, got '%s'",
                                    before);
            return -1;
        }
        page->after = before;
    } else if (before) {
        if (imgstore_parse_u64(&n, before) < 0) {
            *code = cli_usage_error(ctx, "--before: expected a number, got '%s'", before);
            return -1;
        }
        page->before = (size_t)n;
    }
    return optind;
}

int cli_version_arg(const cli_ctx *ctx, int argc, char **argv, int first, char **name_out,
                    char **version_out)
{
    int err;

    *name_out = *version_out = NULL;
    if (argc - first != 1)
        return cli_usage_error(ctx, "expected one NAME@VERSION");
    if ((err = cli_split_ref(name_out, version_out, argv[first])) < 0)
        return cli_fail(ctx, err);
    if (!*version_out) {
        free(*name_out);
        *name_out = NULL;
        return cli_usage_error(ctx, "expected NAME@VERSION, got '%s'", argv[first]);
    }
    return -1;
}

int cli_print_signed(const cli_ctx *ctx, const char *name, const char *version,
                     const imgstore_trust_status *status)
{
    if (ctx->json)
        return cli_print_json(json_pack("{s:s, s:s, s:I, s:I, s:b}", "name", name, "version",
                                        version, "signatures", (json_int_t)status->valid,
                                        "threshold", (json_int_t)status->threshold, "trusted",
                                        status->trusted));
    printf("%s@%s: %zu of %u release signatures%s\n", name, version, status->valid,
           status->threshold, status->trusted ? "" : " (not yet deployable)");
    return 0;
}

int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "imgstore %s: ", ctx->command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see imgstore %s --help)\n", ctx->command);
    return CLI_EXIT_USAGE;
}

const char *cli_safe(const char *text)
{
    /* a few at a time, so that one printf can show several texts */
    static char *shown[8];
    static size_t next;
    char *escaped;

    if (!text)
        return "";
    if (!(escaped = imgstore_schema_text_escape(text)))
        return "(text not shown: out of memory)";
    free(shown[next]);
    shown[next] = escaped;
    next = (next + 1) % (sizeof(shown) / sizeof(shown[0]));
    return escaped;
}

int cli_exit_code(int err)
{
    switch (err) {
    case IMGSTORE_OK:
        return CLI_EXIT_OK;
    case IMGSTORE_EVERIFY:
        return CLI_EXIT_VERIFY;
    default:
        return CLI_EXIT_FAIL;
    }
}

int cli_fail(const cli_ctx *ctx, int err)
{
    const char *msg = imgstore_error_last();

    /* messages quote what a server or a store said */
    fprintf(stderr, "imgstore %s: %s\n", ctx->command,
            *msg ? cli_safe(msg) : imgstore_error_name(err));
    return cli_exit_code(err);
}

int cli_open_store(imgstore_store **out, const cli_ctx *ctx, bool create)
{
    char *path = NULL;
    int err;

    if (!ctx->repo && (err = imgstore_store_default_path(&path)) < 0)
        return err;
    err = create ? imgstore_store_init(out, ctx->repo ? ctx->repo : path)
                 : imgstore_store_open(out, ctx->repo ? ctx->repo : path);
    free(path);
    return err;
}

static char *default_actor(void)
{
    const char *env = getenv("IMGSTORE_ACTOR");
    const char *user = getenv("USER");
    char host[256] = "localhost";

    if (env && *env)
        return strdup(env);
    gethostname(host, sizeof(host) - 1);
    return imgstore_strfmt("%s@%s", user && *user ? user : "imgstore", host);
}

char *cli_actor(const cli_ctx *ctx)
{
    return ctx->actor ? strdup(ctx->actor) : default_actor();
}

int cli_split_ref(char **name_out, char **version_out, const char *ref)
{
    const char *at = strchr(ref, '@');

    *version_out = NULL;
    *name_out = at ? strndup(ref, (size_t)(at - ref)) : strdup(ref);
    if (at && !(*version_out = strdup(at + 1))) {
        free(*name_out);
        *name_out = NULL;
    }
    if (!*name_out)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

int cli_print_json(json_t *value)
{
    char *text;

    if (!value)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    text = json_dumps(value, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(value);
    if (!text)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    printf("%s\n", text);
    free(text);
    return 0;
}

const char *cli_human_size(char *buf, size_t cap, uint64_t bytes)
{
    return imgstore_size_human(buf, cap, bytes);
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_progress_init(cli_progress *p, const char *label, const cli_ctx *ctx)
{
    p->label = label;
    p->enabled = ctx && !ctx->json && !ctx->quiet && isatty(STDERR_FILENO);
    p->start = now_seconds();
    p->last_draw = 0;
}

/* "1:02:03", "4:05": time left at the average rate so far; "--:--" before there is one. */
static const char *eta_text(char *buf, size_t cap, uint64_t left, double rate)
{
    double seconds = rate > 0 ? (double)left / rate : -1;
    unsigned long s;

    if (left == 0)
        seconds = 0;
    if (seconds < 0 || seconds > 360000)
        return "--:--";
    s = (unsigned long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%lu:%02lu", s / 60, s % 60);
    return buf;
}

void cli_progress_update(uint64_t done, uint64_t total, void *payload)
{
    static const char bar[] = "================";
    cli_progress *p = payload;
    double now = now_seconds(), rate;
    char done_text[32], total_text[32], rate_text[32], eta[32];

    /* at most ten lines a second, and always the last one */
    if (!p->enabled || (now - p->last_draw < 0.1 && !(total > 0 && done >= total)))
        return;
    p->last_draw = now;
    rate = now - p->start > 0.001 ? (double)done / (now - p->start) : 0;
    cli_human_size(done_text, sizeof(done_text), done);
    cli_human_size(rate_text, sizeof(rate_text), (uint64_t)rate);
    if (total > 0) {
        int width = (int)sizeof(bar) - 1;
        int filled = done >= total ? width : (int)((double)done / (double)total * width);

        cli_human_size(total_text, sizeof(total_text), total);
        /* under 80 columns: label 14, bar 16, numbers 44 */
        fprintf(stderr, "\r%-14.14s [%-*.*s] %3d%% %s / %s %s/s ETA %s\033[K", p->label, width,
                filled, bar, done >= total ? 100 : (int)((double)done * 100 / (double)total),
                done_text, total_text, rate_text,
                eta_text(eta, sizeof(eta), done >= total ? 0 : total - done, rate));
    } else {
        fprintf(stderr, "\r%-14.14s %s %s/s\033[K", p->label, done_text, rate_text);
    }
}

void cli_progress_done(cli_progress *p)
{
    if (p->enabled && p->last_draw > 0)
        fprintf(stderr, "\r\033[K");
}

/* Extensions dropped when the image name comes from the first file's name. */
static const char *const known_extensions[] = {
    ".xen",  ".hvt",  ".spt",  ".virtio", ".muen", ".iso", ".img",      ".efi", ".qcow2",
    ".vhd",  ".vhdx", ".vmdk", ".raw",    ".bin",  ".gz",  ".xz",       ".zst", ".lz4",
    ".cpio", ".tar",  ".lkrn", ".elf",    ".xl",   ".txt", ".unikernel"};

const char *cli_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* Where a trailing version starts in `base`: after the first '-' followed by a digit that
 * leaves a name before it ("vmlinuz-6.1.0-55-cloud-amd64" -> "6.1.0-55-cloud-amd64"); NULL
 * when there is none or it is not a legal version. */
static const char *trailing_version(const char *base)
{
    for (const char *dash = strchr(base, '-'); dash; dash = strchr(dash + 1, '-')) {
        if (dash > base && dash[1] >= '0' && dash[1] <= '9')
            return imgstore_schema_check_name(IMGSTORE_NAME_VERSION, dash + 1) == 0 ? dash + 1
                                                                                    : NULL;
    }
    return NULL;
}

int cli_default_image_name(char **name_out, char **version_out, const char *path)
{
    const char *version, *start;
    char *base = strdup(cli_base_name(path)), *name = NULL, *out;
    bool stripped = true;
    int err = 0;

    *name_out = *version_out = NULL;
    while (base && stripped) {
        size_t len = strlen(base);

        stripped = false;
        for (size_t i = 0; i < sizeof(known_extensions) / sizeof(*known_extensions); i++) {
            size_t ext = strlen(known_extensions[i]);

            if (len > ext && strcmp(base + len - ext, known_extensions[i]) == 0) {
                base[len - ext] = '\0';
                stripped = true;
                break;
            }
        }
    }
    if (!base)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((version = trailing_version(base)) && !(*version_out = strdup(version))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (version)
        base[version - 1 - base] = '\0';
    /* lower case, other bytes outside a-z 0-9 . _ - become '-', no leading '.' or '-' */
    for (start = base; *start == '.' || *start == '-' || *start == '+'; start++)
        ;
    if (!(name = strndup(start, IMGSTORE_NAME_MAX))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (out = name; *out; out++) {
        if (*out >= 'A' && *out <= 'Z')
            *out = (char)(*out - 'A' + 'a');
        else if (!((*out >= 'a' && *out <= 'z') || (*out >= '0' && *out <= '9') || *out == '.' ||
                   *out == '_' || *out == '-'))
            *out = '-';
    }
    if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name) < 0) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "no image name can be made from the file name '%s'; pass "
                                 "--name NAME (a-z 0-9 . _ -, not starting with '.' or '-')",
                                 cli_base_name(path));
        goto done;
    }
    *name_out = name;
    name = NULL;
done:
    if (err < 0) {
        free(*version_out);
        *version_out = NULL;
    }
    free(name);
    free(base);
    return err;
}

int cli_sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int fd, err = 0;

    if (!copy)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot sync the directory of %s: %s", path,
                                 strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return err;
}

/* init and fsck have no remote mode: with a server set they would quietly act on the
 * default local store instead, so they ask for the store to be named. -1 when local. */
int cli_local_only(const cli_ctx *ctx, int argc, char **argv)
{
    const char *env_repo = getenv("IMGSTORE_REPO");

    if (ctx->repo || (env_repo && *env_repo) || !cli_remote_selected(argc, argv))
        return -1;
    return cli_usage_error(ctx, "acts on a local store only, and a server is set; pass --repo PATH "
                                "(or set IMGSTORE_REPO) to name the local store");
}
