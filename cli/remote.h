/*
 * Remote mode: the CLI against `imgstore serve`, through the client library. Shared by the
 * cli/remote*.c files only; the rest of the CLI sees cli_remote_selected() and the
 * cli_remote_cmd_* entry points declared in cli/cli.h.
 */
#ifndef IMGSTORE_CLI_REMOTE_H
#define IMGSTORE_CLI_REMOTE_H

#include "cli/cli.h"
#include "client/client.h"

/**
 * Open a client on the server, token and pin the command's flags, the environment and the
 * user config file give (in that order). *out belongs to the caller (imgstore_client_free).
 * Returns as imgstore_client_open.
 */
int cli_client_open(imgstore_client **out, const cli_remote_args *args);

#endif
