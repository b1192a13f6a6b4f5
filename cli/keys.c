/*
 * Which keys the CLI signs with, and reading public keys from arguments. The keys
 * themselves (formats, agent protocol, wiping) are sign/'s business.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *cli_default_key_path(void)
{
    const char *env = getenv("IMGSTORE_KEY");
    const char *config = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");

    if (env && *env)
        return strdup(env);
    if (config && *config)
        return imgstore_strfmt("%s/imgstore/key", config);
    return imgstore_strfmt("%s/.config/imgstore/key", home && *home ? home : ".");
}

/* A private key others can read is as good as theirs: say so, as ssh does (issue #10). It
 * is still used, so that a CI job with a loose mode fails loudly in the log, not at once. */
static void warn_if_exposed(const cli_ctx *ctx, const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
        fprintf(stderr,
                "imgstore %s: warning: private key %s is open to others (mode %04o); anyone "
                "who can read it can sign as you: chmod 600 %s\n",
                ctx->command, path, (unsigned)(st.st_mode & 07777), path);
}

/* An encrypted key file needs a passphrase: from the environment, else asked on a TTY. */
static int load_file_key(imgstore_sign_key **out, const char *path, const cli_ctx *ctx)
{
    const char *passphrase = getenv("IMGSTORE_KEY_PASSPHRASE");
    char probe[128] = "";
    FILE *f = fopen(path, "r");

    if (f) {
        size_t n = fread(probe, 1, sizeof(probe) - 1, f);

        probe[n] = '\0';
        fclose(f);
    }
    if (!passphrase && strstr(probe, "IMGSTORE ENCRYPTED PRIVATE KEY") && isatty(STDIN_FILENO)) {
        char prompt[512];

        snprintf(prompt, sizeof(prompt), "passphrase for %s: ", path);
        passphrase = getpass(prompt);
    }
    warn_if_exposed(ctx, path);
    return imgstore_sign_key_load(out, path, passphrase);
}

int cli_signers_load(cli_signers *out, const cli_ctx *ctx)
{
    char *fallback = NULL;
    int err = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < ctx->key_path_count && err == 0; i++) {
        if ((err = load_file_key(&out->keys[out->count], ctx->key_paths[i], ctx)) == 0)
            out->count++;
    }
    if (err == 0 && ctx->agent) {
        if ((err = imgstore_sign_key_from_agent(&out->keys[out->count], getenv("SSH_AUTH_SOCK"),
                                                NULL)) == 0)
            out->count++;
    }
    if (err == 0 && out->count == 0) {
        struct stat st;

        if (!(fallback = cli_default_key_path())) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        } else if (stat(fallback, &st) < 0) {
            err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                     "no signing key: give --key FILE or --agent, set "
                                     "IMGSTORE_KEY, or create %s with imgstore key generate",
                                     fallback);
        } else if ((err = load_file_key(&out->keys[0], fallback, ctx)) == 0) {
            out->count = 1;
        }
    }
    free(fallback);
    if (err < 0)
        cli_signers_free(out);
    return err;
}

imgstore_signers cli_signers_view(const cli_signers *signers)
{
    imgstore_signers view = {(const imgstore_sign_key *const *)signers->keys, signers->count};

    return view;
}

void cli_signers_free(cli_signers *signers)
{
    for (size_t i = 0; i < signers->count; i++)
        imgstore_sign_key_free(signers->keys[i]);
    memset(signers, 0, sizeof(*signers));
}

int cli_pubkey_arg(imgstore_sign_pubkey *out, const char *arg)
{
    char line[2048];
    FILE *f;

    if (strncmp(arg, "ssh-", 4) == 0)
        return imgstore_sign_pubkey_parse(out, arg);
    if (!(f = fopen(arg, "r")))
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "%s: not a public key line and no such file",
                                  arg);
    if (!fgets(line, sizeof(line), f)) {
        fclose(f);
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: empty public key file", arg);
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (imgstore_sign_pubkey_parse(out, line) < 0)
        return imgstore_error_wrap(IMGSTORE_EINVALID, "%s: ", arg);
    return 0;
}
