/*
 * imgstore trust and imgstore sign: show and change the trust policy (who may release, who
 * may deploy, who may change the policy, and how many of them must agree), and add release
 * signatures to a stored version. The rules live in schema/ (policy shape) and store/ (who
 * must sign what); this file turns argv into those calls.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_print_policy(const cli_ctx *ctx, const imgstore_policy *policy, const char *digest)
{
    if (ctx->json) {
        json_t *out = json_pack("{s:o, s:s}", "policy", imgstore_schema_policy_to_json(policy),
                                "sha256", digest);

        return cli_print_json(out);
    }
    printf("trust policy %llu (sha256 %s)\nchannel states expire after %lld s\n",
           (unsigned long long)policy->version, digest, (long long)policy->channel_ttl_seconds);
    for (int role = 0; role < IMGSTORE_ROLE_COUNT; role++) {
        const imgstore_policy_role *r = &policy->roles[role];

        printf("%s: %u of %zu\n", imgstore_schema_role_name((imgstore_role)role), r->threshold,
               r->key_count);
        for (size_t i = 0; i < r->key_count; i++) {
            imgstore_sign_pubkey pub;
            char id[IMGSTORE_SIGN_KEYID_MAX] = "?";

            if (imgstore_sign_pubkey_parse(&pub, r->keys[i]) == 0)
                imgstore_sign_pubkey_fingerprint(id, &pub);
            printf("  %s  %s\n", id, cli_safe(r->keys[i])); /* comments are free text */
        }
    }
    return 0;
}

/* Apply one edit to a copy of the current policy and commit it signed by --key root keys. */
static int edit_policy(cli_ctx *ctx, imgstore_store *store, const char *action,
                       const char *role_arg, const char *value)
{
    imgstore_policy *policy = NULL;
    imgstore_sign_pubkey pub;
    cli_signers signers = {0};
    imgstore_signers view;
    imgstore_role role = IMGSTORE_ROLE_ROOT;
    char *line = NULL, *actor = cli_actor(ctx), digest[65];
    uint64_t version = 0;
    int err;

    if ((err = imgstore_store_policy_get(&policy, NULL, store)) < 0)
        goto done;
    if (strcmp(action, "set-channel-ttl") != 0 &&
        (err = imgstore_schema_role_parse(&role, role_arg)) < 0)
        goto done;
    if (strcmp(action, "add-key") == 0 || strcmp(action, "remove-key") == 0) {
        if ((err = cli_pubkey_arg(&pub, value)) < 0 ||
            (err = imgstore_sign_pubkey_format(&line, &pub)) < 0)
            goto done;
        err = strcmp(action, "add-key") == 0
                  ? imgstore_schema_policy_add_key(policy, role, line)
                  : imgstore_schema_policy_remove_key(policy, role, line);
    } else {
        char *end = NULL;
        unsigned long long n;

        errno = 0;
        n = strtoull(value, &end, 10);
        if (errno || !end || *end || end == value || *value == '-') {
            err = imgstore_error_set(IMGSTORE_EINVALID, "'%s' is not a number", value);
            goto done;
        }
        if (strcmp(action, "set-threshold") == 0) {
            err = n > UINT32_MAX ? imgstore_error_set(IMGSTORE_EINVALID, "threshold too large")
                                 : imgstore_schema_policy_set_threshold(policy, role, (uint32_t)n);
        } else {
            policy->channel_ttl_seconds = (int64_t)(n > INT64_MAX ? INT64_MAX : n);
            err = 0;
        }
    }
    if (err < 0 || (err = cli_signers_load(&signers, ctx)) < 0)
        goto done;
    view = cli_signers_view(&signers);
    if ((err = imgstore_store_policy_update(&version, store, policy, &view, actor)) < 0)
        goto done;
    imgstore_policy_free(policy);
    policy = NULL;
    if ((err = imgstore_store_policy_get(&policy, digest, store)) == 0)
        err = cli_print_policy(ctx, policy, digest);
done:
    cli_signers_free(&signers);
    imgstore_policy_free(policy);
    free(line);
    free(actor);
    return err;
}

int cli_cmd_trust(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    imgstore_policy *policy = NULL;
    const char *action;
    char digest[65];
    int code, err = 0, want, first;

    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_trust(ctx, argc, argv);
    if ((first = cli_parse_common(ctx, argc, argv, &code)) < 0)
        return code;
    action = first < argc ? argv[first] : "";
    want = strcmp(action, "show") == 0              ? 0
           : strcmp(action, "set-channel-ttl") == 0 ? 1
           : strcmp(action, "add-key") == 0 || strcmp(action, "remove-key") == 0 ||
                   strcmp(action, "set-threshold") == 0
               ? 2
               : -1;
    if (want < 0)
        return cli_usage_error(ctx, "expected show, add-key, remove-key, set-threshold or "
                                    "set-channel-ttl");
    first++;
    if (argc - first != want)
        return cli_usage_error(ctx, "trust %s takes %d argument%s", action, want,
                               want == 1 ? "" : "s");
    if ((err = cli_open_store(&store, ctx, false)) < 0)
        goto done;
    if (want == 0) {
        if ((err = imgstore_store_policy_get(&policy, digest, store)) == 0)
            err = cli_print_policy(ctx, policy, digest);
    } else {
        err =
            edit_policy(ctx, store, action, want == 2 ? argv[first] : NULL, argv[first + want - 1]);
    }
done:
    imgstore_policy_free(policy);
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_cmd_sign(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    imgstore_trust_status status = {0};
    cli_signers signers = {0};
    imgstore_signers view;
    char *name = NULL, *version = NULL, *actor = NULL;
    cli_read_args args;
    int code, err, first;

    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_sign(ctx, argc, argv);
    if ((first = cli_read_parse(ctx, argc, argv, &args, false, &code)) < 0 ||
        (code = cli_version_arg(ctx, argc, argv, first, &name, &version)) >= 0)
        return code;
    if (!(actor = cli_actor(ctx))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = cli_open_store(&store, ctx, false)) < 0 || /* first: "run imgstore init" */
        (err = cli_signers_load(&signers, ctx)) < 0)
        goto done;
    view = cli_signers_view(&signers);
    if ((err = imgstore_store_sign_version(&status, store, name, version, &view, actor)) < 0)
        goto done;
    err = cli_print_signed(ctx, name, version, &status);
done:
    cli_signers_free(&signers);
    imgstore_store_free(store);
    free(actor);
    free(name);
    free(version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
