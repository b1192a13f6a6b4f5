/*
 * Which server and token a command uses: flags, then the environment (IMGSTORE_SERVER,
 * IMGSTORE_TOKEN, IMGSTORE_TRUST_POLICY_SHA256), then the user config file; and opening a
 * client (client/client.h) with them. The CLI's whole remote mode goes through here; what
 * the server says, and whether to believe it, is client/'s business.
 */
#include "cli/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX (64u * 1024)

static char *config_path(void)
{
    const char *config = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");

    if (config && *config)
        return imgstore_strfmt("%s/imgstore/config", config);
    return imgstore_strfmt("%s/.config/imgstore/config", home && *home ? home : ".");
}

/* The value of `key = value` in the user config file (free()), or NULL. A missing or
 * unreadable file is no error: the file is optional. */
static char *config_value(const char *key)
{
    char *path = config_path(), line[4096], *found = NULL;
    size_t total = 0;
    FILE *f = path ? fopen(path, "r") : NULL;

    free(path);
    if (!f)
        return NULL;
    while (!found && total < CONFIG_MAX && fgets(line, sizeof(line), f)) {
        char *at = line, *eq, *end;

        total += strlen(line);
        at += strspn(at, " \t");
        if (*at == '#' || !(eq = strchr(at, '=')))
            continue;
        end = eq;
        while (end > at && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - at) != strlen(key) || strncmp(at, key, strlen(key)) != 0)
            continue;
        eq++;
        eq += strspn(eq, " \t");
        eq[strcspn(eq, "\r\n")] = '\0';
        end = eq + strlen(eq);
        while (end > eq && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*eq)
            found = strdup(eq);
    }
    fclose(f);
    return found;
}

static bool has_option(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strncmp(argv[i], name, len) == 0 && (argv[i][len] == '\0' || argv[i][len] == '='))
            return true;
    }
    return false;
}

bool cli_remote_selected(int argc, char **argv)
{
    const char *env;
    char *configured;

    if (has_option(argc, argv, "--server"))
        return true;
    if (has_option(argc, argv, "--repo"))
        return false;
    if ((env = getenv("IMGSTORE_SERVER")) && *env)
        return true;
    if ((env = getenv("IMGSTORE_REPO")) && *env)
        return false;
    configured = config_value("server");
    free(configured);
    return configured != NULL;
}

bool cli_remote_option(cli_remote_args *args, int opt, const char *arg)
{
    switch (opt) {
    case OPT_REMOTE_SERVER:
        args->server = arg;
        return true;
    case OPT_REMOTE_TOKEN:
        args->token = arg;
        return true;
    case OPT_REMOTE_PIN:
        args->pin = arg;
        return true;
    default:
        return false;
    }
}

static char *setting(const char *flag, const char *env_name, const char *config_key)
{
    const char *env = getenv(env_name);

    if (flag)
        return strdup(flag);
    if (env && *env)
        return strdup(env);
    return config_value(config_key);
}

int cli_client_open(imgstore_client **out, const cli_remote_args *args)
{
    const char *pin_env = getenv("IMGSTORE_TRUST_POLICY_SHA256");
    imgstore_client_opts opts;
    char *url = setting(args->server, "IMGSTORE_SERVER", "server");
    char *token = setting(args->token, "IMGSTORE_TOKEN", "token");
    int err;

    *out = NULL;
    memset(&opts, 0, sizeof(opts));
    opts.server_url = url;
    opts.token = token;
    opts.trust_policy_sha256 = args->pin ? args->pin : (pin_env && *pin_env ? pin_env : NULL);
    /* the library's messages name no flag: the checks a user fixes with one come first here */
    if (!url || !*url)
        err = imgstore_error_set(IMGSTORE_EINVALID, "no server: give --server URL");
    else if (opts.trust_policy_sha256 &&
             (strlen(opts.trust_policy_sha256) != 64 ||
              opts.trust_policy_sha256[strspn(opts.trust_policy_sha256, "0123456789abcdef")]))
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "--trust-policy-sha256: expected 64 lower-case hex digits");
    else
        err = imgstore_client_open(out, &opts);
    free(token);
    free(url);
    return err;
}
