/*
 * Host reports (docs/agent.md): what an agent says about its host on a channel, posted as is.
 * Unsigned claims: nothing here signs or verifies them, and the server keeps them outside the
 * signed history. The agent's only write that needs no deploy key.
 */
#include "client/client_internal.h"

#include <stdlib.h>

int imgstore_client_report(imgstore_client *client, const char *name, const char *channel,
                           const imgstore_client_report_opts *report)
{
    char *path = NULL;
    json_t *body = NULL, *answer = NULL;
    int err;

    if ((err = imgstore_client_check_names(name, NULL, channel)) < 0)
        return err;
    if (!report || !report->host || !report->state)
        return imgstore_error_set(IMGSTORE_EINVALID, "report: host and state are required");
    if (!(path = imgstore_strfmt("/v1/channels/%s/%s/reports", name, channel)) ||
        !(body = json_pack("{s:s, s:s, s:s*, s:s*, s:s*}", "host", report->host, "state",
                           report->state, "version", report->version, "attempted",
                           report->attempted, "message", report->message))) {
        free(path);
        json_decref(body);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    err = imgstore_client__send_json(&answer, NULL, client, "POST", path, body);
    json_decref(answer);
    free(path);
    return err;
}
