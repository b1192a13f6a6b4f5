/*
 * Shared by the files of client/ only: the handle, and the HTTP plumbing (http.c) that the
 * verifying calls (verify.c, push.c, channel.c) are built on.
 */
#ifndef IMGSTORE_CLIENT_INTERNAL_H
#define IMGSTORE_CLIENT_INTERNAL_H

#include "client/client.h"

#include <curl/curl.h>

/* Caps on what the client accepts from a server, so a hostile one cannot exhaust memory. */
#define IMGSTORE_CLIENT__JSON_MAX     (8u * 1024 * 1024)
#define IMGSTORE_CLIENT__ERROR_MAX    (64u * 1024)
#define IMGSTORE_CLIENT__POLICIES_MAX 4096

struct imgstore_client {
    char *url;       /* base URL, no trailing slash */
    char *token;     /* bearer token, NULL for none */
    char *pin;       /* policy 1's sha256, or NULL */
    char *state_dir; /* pins/ and seen/ below it; NULL: imgstore_trust_state_dir() */
    char *ca_file;   /* NULL: libcurl's default */
    CURL *curl;      /* one handle, so connections are kept alive between requests */
    imgstore_progress_fn progress;
    void *progress_payload;
    uint64_t progress_base, progress_total;
    const volatile sig_atomic_t *stop;
    CURLcode last_result; /* libcurl's result of the last request */
    /* the verified policy chain (verify.c) */
    bool loaded;
    char store_id[41];
    char tip[41];
    imgstore_policy *policy;
    uint64_t policy_count;
};

typedef struct {
    long status;
    char *body; /* NUL-terminated, free() */
    size_t len;
} imgstore_client__response;

/**
 * One request: `method` on `path` (from /v1...), with a JSON body (NULL for none). The answer
 * is read into resp (at most `cap` bytes: IMGSTORE_EINVALID past it). Returns 0 when an
 * answer arrived, whatever its status; IMGSTORE_ERROR when the server could not be reached.
 */
int imgstore_client__call(imgstore_client *client, const char *method, const char *path,
                          const char *json, size_t cap, imgstore_client__response *resp);

/** 0 for a 2xx answer, else the error its status maps to, with the server's message. */
int imgstore_client__status_error(const imgstore_client *client, const char *path,
                                  const imgstore_client__response *resp);

void imgstore_client__response_free(imgstore_client__response *resp);

/** Request with a JSON body (stolen; NULL for none) and parse the JSON answer (2xx only);
 * *status_out (may be NULL) gets the status even on failure. */
int imgstore_client__send_json(json_t **out, long *status_out, imgstore_client *client,
                               const char *method, const char *path, json_t *body);

/** GET raw bytes (2xx only), at most `cap`. *out is NUL-terminated, free(). */
int imgstore_client__get_bytes(char **out, size_t *len_out, imgstore_client *client,
                               const char *path, size_t cap);

/* Receives a download's body; `status` is the answer's (200 or 206). */
typedef int (*imgstore_client__body_fn)(long status, const void *buf, size_t len, void *payload);

/** GET `path` from byte `offset` on (a Range request when offset > 0), streaming the body to
 * `body`. Non-2xx answers are errors as imgstore_client__status_error() says. */
int imgstore_client__download(imgstore_client *client, const char *path, uint64_t offset,
                              imgstore_client__body_fn body, void *payload);

typedef struct {
    const char *path;   /* local file */
    const char *name;   /* file name in the version */
    const char *sha256; /* its digest, computed in a first pass */
    const char *kind;   /* NULL: let the server detect */
    uint64_t size;
} imgstore_client__upload_file;

/* A form field sent before every file part (the provenance fields "label" and "source"). */
typedef struct {
    const char *name;
    const char *value;
} imgstore_client__form_field;

/** POST a multipart upload to `path`: the `fields` first, then each file streamed from disk. */
int imgstore_client__upload(json_t **out, imgstore_client *client, const char *path,
                            const imgstore_client__form_field *fields, size_t field_count,
                            const imgstore_client__upload_file *files, size_t count);

/** mkdir -p with mode 0700. */
int imgstore_client__mkdirs(const char *path);

/** The verified policy, loading the chain first when it is not loaded yet. */
int imgstore_client__policy(const imgstore_policy **out, imgstore_client *client);

#endif
