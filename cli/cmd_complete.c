/*
 * The store half of the hidden `imgstore __complete` the shell completions call on every
 * TAB (contrib/completion): image names, an image's channels, its newest versions. Each is
 * one tree or index read (docs/format.md, Indexes), never a walk of the versions, so a TAB
 * costs the same at 1,000,000 versions as at ten. Local store only: completing against a
 * server would put a network round trip (and a token) behind every TAB. It prints nothing,
 * and exits 0, when there is no store or no such image: a completion never shows errors.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* versions offered after NAME@: a page of the newest, enough to choose from */
#define COMPLETE_VERSIONS 200

int cli_complete_store(cli_ctx *ctx, int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "", *name = NULL;
    imgstore_store *store = NULL;
    imgstore_version_row *rows = NULL;
    char **names = NULL;
    size_t count = 0;

    ctx->repo = getenv("IMGSTORE_REPO");
    for (int i = 2; i < argc; i++) { /* NAME, and the --repo of the line being completed */
        if (strcmp(argv[i], "--repo") == 0 && i + 1 < argc)
            ctx->repo = argv[++i];
        else if (!name)
            name = argv[i];
    }
    if (strcmp(what, "images") != 0 && (strcmp(what, "channels") != 0 || !name) &&
        (strcmp(what, "versions") != 0 || !name))
        return CLI_EXIT_USAGE;
    if (cli_open_store(&store, ctx, false) < 0)
        return CLI_EXIT_OK;
    if (strcmp(what, "images") == 0 && imgstore_store_list_images(&names, &count, store) == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", names[i]);
        imgstore_strings_free(names, count);
    } else if (strcmp(what, "channels") == 0 &&
               imgstore_store_list_channels(&names, &count, store, name) == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", names[i]);
        imgstore_strings_free(names, count);
    } else if (strcmp(what, "versions") == 0 &&
               imgstore_store_versions_page(&rows, &count, NULL, store, name, SIZE_MAX,
                                            COMPLETE_VERSIONS) == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", rows[i].version);
        imgstore_version_rows_free(rows, count);
    }
    imgstore_store_free(store);
    imgstore_error_clear();
    return CLI_EXIT_OK;
}
