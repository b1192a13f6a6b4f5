/*
 * The upload route's multipart/form-data parser (server/multipart.c). The input's first line
 * is the Content-Type, the rest the body. The body is fed whole, then again in pseudo-random
 * pieces (from 1 byte to all of it, chosen from the input itself so a crash replays): both
 * runs must make the same calls with the same bytes and end the same way, as a body read
 * ~16 KiB at a time by libmicrohttpd may be cut anywhere.
 */
#include "fuzz_util.h"
#include "server/server_internal.h"

typedef struct {
    char *bytes;
    size_t len, cap;
    char last; /* the last event, so that file data in any pieces logs the same */
    bool in_file;
} event_log;

static void log_put(event_log *log, const void *data, size_t len)
{
    if (len == 0)
        return;
    if (log->len + len > log->cap) {
        log->cap = (log->len + len) * 2 + 256;
        FUZZ_CHECK((log->bytes = realloc(log->bytes, log->cap)) != NULL);
    }
    memcpy(log->bytes + log->len, data, len);
    log->len += len;
}

static void log_event(event_log *log, char kind, const void *data, size_t len)
{
    uint32_t n = (uint32_t)len;

    log_put(log, &kind, 1);
    log_put(log, &n, sizeof(n));
    log_put(log, data, len);
    log->last = kind;
}

static int on_file_begin(const char *filename, void *payload)
{
    event_log *log = payload;

    FUZZ_CHECK(!log->in_file);
    log->in_file = true;
    log_event(log, 'B', filename, strlen(filename));
    /* a refusal from the route (a bad file name) must stop both runs at the same point */
    if (strcmp(filename, "refuse") == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "file name refuse refused");
    return 0;
}

static int on_file_data(const char *data, size_t len, void *payload)
{
    event_log *log = payload;

    FUZZ_CHECK(log->in_file && len > 0);
    if (log->last != 'D')
        log_event(log, 'D', NULL, 0);
    log_put(log, data, len);
    return 0;
}

static int on_file_end(void *payload)
{
    event_log *log = payload;

    FUZZ_CHECK(log->in_file);
    log->in_file = false;
    log_event(log, 'E', NULL, 0);
    return 0;
}

static int on_field(const char *name, const char *value, size_t len, void *payload)
{
    event_log *log = payload;

    FUZZ_CHECK(!log->in_file);
    FUZZ_CHECK(value[len] == '\0' && len <= IMGSTORE_SERVER_MULTIPART_VALUE_MAX);
    log_event(log, 'N', name, strlen(name));
    log_event(log, 'V', value, len);
    return 0;
}

static const imgstore_server__multipart_callbacks callbacks = {
    .file_begin = on_file_begin,
    .file_data = on_file_data,
    .file_end = on_file_end,
    .field = on_field,
};

/* xorshift64: the pieces of the second run, seeded from the body */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Feed body in pieces (whole when `seed` is 0); the result, and done through *done_out. */
static int run(event_log *log, const char *type, const char *body, size_t len, uint64_t seed,
               bool *done_out)
{
    imgstore_server__multipart *mp = NULL;
    size_t at = 0;
    int err;

    *done_out = false;
    if ((err = imgstore_server__multipart_new(&mp, type, &callbacks, log)) < 0)
        return err;
    while (err == 0 && at < len) {
        size_t piece = len - at;

        if (seed) {
            uint64_t r = next_random(&seed);

            /* mostly short pieces: delimiters and header blocks cut at every place */
            piece = (r & 3) ? 1 + (size_t)(r >> 8) % 8 : 1 + (size_t)(r >> 8) % (len - at);
            if (piece > len - at)
                piece = len - at;
        }
        err = imgstore_server__multipart_feed(mp, body + at, piece);
        at += piece;
    }
    if (err == 0)
        *done_out = imgstore_server__multipart_done(mp);
    imgstore_server__multipart_free(mp);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *newline = memchr(data, '\n', size < 256 ? size : 256);
    event_log whole = {0}, split = {0};
    char type[257];
    const char *body;
    size_t type_len, body_len;
    uint64_t seed = 0xcbf29ce484222325ull; /* FNV-1a of the input */
    bool whole_done, split_done;
    int whole_err, split_err;

    if (!newline)
        return 0;
    type_len = (size_t)(newline - data);
    memcpy(type, data, type_len);
    type[type_len] = '\0';
    body = (const char *)newline + 1;
    body_len = size - type_len - 1;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ull;
    seed |= 1;

    imgstore_error_clear();
    whole_err = run(&whole, type, body, body_len, 0, &whole_done);
    FUZZ_CHECK_FAILURE_SAYS_WHY(whole_err);
    imgstore_error_clear();
    split_err = run(&split, type, body, body_len, seed, &split_done);
    FUZZ_CHECK_FAILURE_SAYS_WHY(split_err);

    FUZZ_CHECK(whole_err == split_err);
    FUZZ_CHECK(whole_done == split_done);
    FUZZ_CHECK(whole.len == split.len);
    FUZZ_CHECK(whole.len == 0 || memcmp(whole.bytes, split.bytes, whole.len) == 0);
    free(whole.bytes);
    free(split.bytes);
    return 0;
}
