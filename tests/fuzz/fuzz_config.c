/*
 * The server's config file: the input is written to a file and loaded as `imgstore serve
 * --config` loads it, into a fresh configuration with its defaults; then each of its lines
 * is set again one by one through imgstore_server_config_set as the CLI's --set does. A
 * failure must say why; a configuration that loaded must copy.
 */
#include "fuzz_util.h"
#include "server/server_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imgstore_server_config *config = NULL, *copy = NULL;
    char *text, *line, *save = NULL;
    int err;

    FUZZ_CHECK(imgstore_server_config_new(&config) == 0);
    imgstore_error_clear();
    err = imgstore_server_config_load(config, fuzz_temp_file(data, size));
    FUZZ_CHECK_FAILURE_SAYS_WHY(err);
    FUZZ_CHECK(err == 0 || err == IMGSTORE_EINVALID);
    if (err == 0) {
        FUZZ_CHECK(imgstore_server__config_copy(&copy, config) == 0);
        imgstore_server_config_free(copy);
    }
    imgstore_server_config_free(config);

    /* key=value lines straight into set (no trimming: set must cope with any text) */
    FUZZ_CHECK(imgstore_server_config_new(&config) == 0);
    FUZZ_CHECK((text = malloc(size + 1)) != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');

        if (!eq)
            continue;
        *eq = '\0';
        imgstore_error_clear();
        FUZZ_CHECK_FAILURE_SAYS_WHY(imgstore_server_config_set(config, line, eq + 1));
    }
    free(text);
    imgstore_server_config_free(config);
    return 0;
}
