/*
 * Moving channels and reading their past: deploy, rollback, history (with --at to answer
 * "what was live on prod at 03:12?" during an incident review).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_CHANNEL = OPT_FIRST_LOCAL, OPT_REASON, OPT_TO, OPT_AT };

int cli_channel_parse(cli_ctx *ctx, int argc, char **argv, cli_channel_args *args, int *code)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            CLI_REMOTE_OPTIONS,
                                            {"channel", required_argument, NULL, OPT_CHANNEL},
                                            {"reason", required_argument, NULL, OPT_REASON},
                                            {"to", required_argument, NULL, OPT_TO},
                                            {"at", required_argument, NULL, OPT_AT},
                                            {"limit", required_argument, NULL, OPT_LIMIT},
                                            {"before", required_argument, NULL, OPT_BEFORE},
                                            {NULL, 0, NULL, 0}};
    int opt;

    *code = -1;
    memset(args, 0, sizeof(*args));
    while ((opt = cli_next_option(ctx, argc, argv, "", options, &args->remote, code)) != -1) {
        /* one parser for four commands: each takes only its own options (and --help says
         * which, issue #10) */
        if ((opt == OPT_REASON && strcmp(ctx->command, "deploy") != 0 &&
             strcmp(ctx->command, "rollback") != 0) ||
            (opt == OPT_TO && strcmp(ctx->command, "rollback") != 0) ||
            ((opt == OPT_AT || opt == OPT_LIMIT || opt == OPT_BEFORE) &&
             strcmp(ctx->command, "history") != 0)) {
            *code = cli_usage_error(ctx, "unknown option '--%s'",
                                    opt == OPT_REASON   ? "reason"
                                    : opt == OPT_TO     ? "to"
                                    : opt == OPT_LIMIT  ? "limit"
                                    : opt == OPT_BEFORE ? "before"
                                                        : "at");
            return -1;
        }
        if (opt == OPT_CHANNEL)
            args->channel = optarg;
        else if (opt == OPT_REASON)
            args->reason = optarg;
        else if (opt == OPT_TO)
            args->to = optarg;
        else if (opt == OPT_AT)
            args->at = optarg;
        else if (opt == OPT_LIMIT)
            args->limit = optarg;
        else if (opt == OPT_BEFORE)
            args->before = optarg;
    }
    /* the store's rule, before anything is signed or sent (both modes say the same) */
    if (*code < 0 && args->reason) {
        int err = imgstore_schema_check_text("reason", args->reason);

        if (err < 0)
            *code = cli_fail(ctx, err);
    }
    return *code >= 0 ? -1 : optind;
}

int cli_print_state(const cli_ctx *ctx, const imgstore_channel_state *s)
{
    if (ctx->json)
        return cli_print_json(imgstore_schema_channel_to_json(s));
    printf("%s/%s -> %s (sequence %llu", s->name, s->channel, s->version,
           (unsigned long long)s->sequence);
    if (s->previous_version)
        printf(", was %s", s->previous_version);
    printf(")\n");
    return 0;
}

static int move(cli_ctx *ctx, int argc, char **argv, bool rollback)
{
    imgstore_store *store = NULL;
    imgstore_channel_state *state = NULL;
    imgstore_channel_opts opts = {0};
    cli_signers signers = {0};
    cli_channel_args args;
    char *actor = NULL;
    int code, err = 0;
    int first = cli_channel_parse(ctx, argc, argv, &args, &code);

    if (first < 0)
        return code;
    if (argc - first != (rollback ? 1 : 2))
        return cli_usage_error(ctx, rollback ? "expected NAME" : "expected NAME VERSION");
    if (!args.channel)
        return cli_usage_error(ctx, "--channel is required");
    if (args.at || args.limit || args.before || (args.to && !rollback))
        return cli_usage_error(ctx, "unexpected option for %s", ctx->command);
    if (!(actor = cli_actor(ctx)))
        return cli_fail(ctx, imgstore_error_set(IMGSTORE_ERROR, "out of memory"));
    opts.actor = actor;
    opts.reason = args.reason;
    opts.to_version = args.to;
    /* the store first, so that a new machine is told to run imgstore init (issue #10) */
    if ((err = cli_open_store(&store, ctx, false)) == 0 &&
        (err = cli_signers_load(&signers, ctx)) == 0)
        opts.signers = cli_signers_view(&signers);
    if (err == 0) {
        if (rollback)
            err = imgstore_store_rollback(&state, store, argv[first], args.channel, &opts);
        else
            err = imgstore_store_deploy(&state, store, argv[first], argv[first + 1], args.channel,
                                        &opts);
    }
    if (err == 0)
        err = cli_print_state(ctx, state);
    imgstore_channel_state_free(state);
    imgstore_store_free(store);
    cli_signers_free(&signers);
    free(actor);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_cmd_deploy(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_deploy(ctx, argc, argv);
    return move(ctx, argc, argv, false);
}

int cli_cmd_rollback(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_rollback(ctx, argc, argv);
    return move(ctx, argc, argv, true);
}

int cli_history_parse(cli_ctx *ctx, int argc, char **argv, cli_channel_args *args,
                      const char **name_out, int *code)
{
    int first = cli_channel_parse(ctx, argc, argv, args, code);

    if (first < 0)
        return -1;
    if (argc - first != 1)
        *code = cli_usage_error(ctx, "expected NAME");
    else if (args->reason || args->to)
        *code = cli_usage_error(ctx, "unexpected option for history");
    else if (args->at && !args->channel)
        *code = cli_usage_error(ctx, "--at needs --channel");
    else if (args->at && (args->limit || args->before))
        *code = cli_usage_error(ctx, "--at answers one state: no --limit or --before with it");
    else if (args->limit &&
             (imgstore_parse_u64(&args->limit_n, args->limit) < 0 || args->limit_n == 0))
        *code = cli_usage_error(ctx, "--limit: expected a positive number, got '%s'", args->limit);
    else if (args->before &&
             (imgstore_parse_u64(&args->query.before, args->before) < 0 || args->query.before == 0))
        *code = cli_usage_error(ctx,
                                "--before: expected an operation number (the \"next\" a "
                                "page ended with), got '%s'",
                                args->before);
    else if (args->at && imgstore_time_parse(&args->query.at, args->at) < 0)
        *code = cli_usage_error(ctx, "--at: expected an RFC 3339 time, got '%s'", args->at);
    args->query.has_at = args->at != NULL;
    *name_out = argv[first];
    return *code >= 0 ? -1 : 0;
}

/* --at: the state live on the channel then, the newest whose time is not after it. */
static int print_history_at(const cli_ctx *ctx, const cli_channel_args *args, const char *name,
                            json_t *entries)
{
    int64_t when, state_time;
    json_t *row;
    size_t i;

    if (imgstore_time_parse(&when, args->at) < 0)
        return IMGSTORE_EINVALID;
    json_array_foreach(entries, i, row)
    {
        json_t *state = json_object_get(row, "state");
        const char *t = json_string_value(json_object_get(state, "time"));

        if (t && imgstore_time_parse(&state_time, t) == 0 && state_time <= when) {
            if (ctx->json)
                return cli_print_json(json_pack("{s:s, s:O}", "at", args->at, "state", state));
            printf("%s\n", json_string_value(json_object_get(state, "version")));
            return 0;
        }
    }
    return imgstore_error_set(IMGSTORE_ENOTFOUND, "%s/%s did not exist yet at %s", name,
                              args->channel, args->at);
}

int cli_history_unknown(int image_err, const char *name, const char *channel)
{
    /* a typo is not an empty history: say which name matched nothing */
    if (image_err == IMGSTORE_ENOTFOUND)
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "no image named %s", name);
    if (image_err < 0)
        return image_err;
    if (channel)
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "image %s has no channel %s", name, channel);
    return 0;
}

int cli_print_history(const cli_ctx *ctx, const cli_channel_args *args, const char *name,
                      json_t *entries, uint64_t next)
{
    json_t *row, *body;
    size_t i;

    if (args->at)
        return print_history_at(ctx, args, name, entries);
    if (ctx->json) {
        body = json_pack("{s:s, s:O, s:o}", "name", name, "entries", entries, "next",
                         next ? json_integer((json_int_t)next) : json_null());
        if (body && args->channel)
            json_object_set_new(body, "channel", json_string(args->channel));
        return cli_print_json(body);
    }
    json_array_foreach(entries, i, row)
    {
        const char *commit = json_string_value(json_object_get(row, "commit"));
        const char *actor = json_string_value(json_object_get(row, "actor"));
        const char *summary = json_string_value(json_object_get(row, "summary"));
        const char *when = json_string_value(json_object_get(row, "time"));
        const char *action = json_string_value(json_object_get(row, "action"));

        /* commit subjects and actors are whatever a git-level writer or a server wrote */
        if (action && summary && strcmp(action, "cut") == 0 &&
            strncmp(summary, "cut history at ", 15) == 0) {
            printf("history before %s was cut by %s (previous %s)\n", cli_safe(when),
                   cli_safe(actor), cli_safe(summary + 15));
            continue;
        }
        printf("%s  %.12s  %-20s  %s\n", cli_safe(when), cli_safe(commit), cli_safe(actor),
               cli_safe(summary));
    }
    if (next) {
        fflush(stdout);
        fprintf(stderr, "(older entries: imgstore history %s%s%s --limit %zu --before %llu)\n",
                name, args->channel ? " --channel " : "", args->channel ? args->channel : "",
                json_array_size(entries), (unsigned long long)next);
    }
    return 0;
}

int cli_cmd_history(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_history(ctx, argc, argv);
    imgstore_store *store = NULL;
    imgstore_history_entry *entries = NULL;
    cli_channel_args args;
    json_t *rows = NULL;
    const char *name;
    size_t count = 0;
    uint64_t next = 0;
    int code, err = 0;

    if (cli_history_parse(ctx, argc, argv, &args, &name, &code) < 0)
        return code;
    args.query.channel = args.channel;
    args.query.limit = (size_t)args.limit_n;
    if ((err = cli_open_store(&store, ctx, false)) == 0 &&
        (err = imgstore_store_history_query(&entries, &count, &next, store, name, &args.query)) ==
            0 &&
        count == 0 && !args.at && !args.before) {
        imgstore_version_row *newest = NULL;
        size_t rows_read = 0;

        err = cli_history_unknown(
            imgstore_store_versions_page(&newest, &rows_read, NULL, store, name, SIZE_MAX, 1), name,
            args.channel);
        imgstore_version_rows_free(newest, rows_read);
    }
    if (err == 0)
        err = (rows = imgstore_store_history_to_json(entries, count))
                  ? cli_print_history(ctx, &args, name, rows, next)
                  : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    json_decref(rows);
    imgstore_history_free(entries, count);
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
