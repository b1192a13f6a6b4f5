/*
 * Host reports (docs/agent.md): what an agent says about its host on a channel, posted as is.
 * Unsigned claims: nothing here signs or verifies them, and the server keeps them outside the
 * signed history. The agent's only write that needs no deploy key. The server says whether
 * it vouched for the host name (the token is bound to it, issue #12).
 */
#include "client/client_internal.h"

#include <stdlib.h>

int imgstore_client_report(bool *host_verified_out, imgstore_client *client, const char *name,
                           const char *channel, const imgstore_client_report_opts *report)
{
    char *path = NULL;
    json_t *body = NULL, *answer = NULL;
    int err;

    if (host_verified_out)
        *host_verified_out = false;
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
    if (err == 0 && host_verified_out) /* a server older than host binding says nothing */
        *host_verified_out = json_is_true(json_object_get(answer, "host_verified"));
    json_decref(answer);
    free(path);
    return err;
}
